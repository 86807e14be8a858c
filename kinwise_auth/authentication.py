"""JWT authentication that refuses the access tokens of revoked sessions.

simplejwt's ``JWTAuthentication`` accepts an access token until it expires,
whatever became of the sign-in it came from. This one also asks whether the
token's session (its ``sid`` claim) was revoked — by logout, a password change
or reset, deletion, deactivation, reuse detection or the user — for one cache
read per request (one indexed query when the cache misses or fails). The
package's signed-in views use it; a host's views can too::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "kinwise_auth.authentication.SessionJWTAuthentication",
        ],
    }
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from .services.session_state import is_revoked
from .services.sessions import SESSION_CLAIM

__all__ = ["SessionJWTAuthentication"]


class SessionJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, refusing a token whose session is revoked
    (or that names no session): 401 ``token_not_valid``."""

    def get_validated_token(self, raw_token: bytes) -> Any:
        token = super().get_validated_token(raw_token)
        sid = token.get(SESSION_CLAIM)
        if sid is None or is_revoked(sid):
            raise InvalidToken(
                {
                    "detail": _("This session has ended. Sign in again."),
                    "code": "token_not_valid",
                }
            )
        return token
