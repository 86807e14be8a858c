"""A host project's own views that call kinwise-auth's services.

Under the test settings' ``ATOMIC_REQUESTS`` each runs in the request's
transaction, like a signup view of a host that adds its own profile step after the
package's registration, and whose step then fails.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kinwise_auth.services import RequestMeta, register_user


class HostProfileError(Exception):
    """The host's own step failed after the registration."""


class SignupThenFail(APIView):
    """Registers ``email``, then fails the host's own step as ``how`` says.

    ``how="refuse"`` answers 400 through DRF (which marks the request's transaction
    for rollback); ``how="crash"`` raises, and Django rolls the request back.
    """

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        register_user(
            email=str(request.data["email"]),
            password=str(request.data["password"]),
            meta=RequestMeta(ip=request.META.get("REMOTE_ADDR")),
        )
        if request.data.get("how") == "crash":
            raise HostProfileError("the host's profile step crashed")
        raise ValidationError({"profile": ["The host refused the profile."]})
