"""The passkey endpoints: thin views over :mod:`kinwise_auth.services`, built on
the bases of :mod:`kinwise_auth.views` (limits, validation, error shape)."""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import services
from ..conf import auth_settings
from ..models import Passkey
from ..serializers import (
    MfaPasskeySerializer,
    MfaTokenSerializer,
    OptionalPasswordSerializer,
    PasskeyLoginSerializer,
    PasskeyRegisterSerializer,
    PasskeyRenameSerializer,
)
from . import AuthAPIView, SignedInAPIView

__all__ = [
    "passkey_payload",
    "PasskeysView",
    "PasskeyRegisterOptionsView",
    "PasskeyRegisterView",
    "PasskeyDetailView",
    "PasskeyLoginOptionsView",
    "PasskeyLoginView",
    "MfaPasskeyOptionsView",
    "MfaPasskeyAuthenticateView",
    "ReauthenticationPasskeyOptionsView",
]


def passkey_payload(passkey: Passkey) -> dict[str, Any]:
    """A passkey as its owner sees it: no key, no credential id."""
    return {
        "id": passkey.pk,
        "name": passkey.name,
        "created_at": passkey.created_at,
        "last_used_at": passkey.last_used_at,
        "synced": passkey.backed_up,
    }


class PasskeysView(SignedInAPIView):
    """The caller's passkeys, the newest first."""

    scope = "passkeys"
    http_method_names = ["get", "head", "options"]

    def get(self, request: Request) -> Response:
        keys = services.list_passkeys(user=self.account(request))
        return Response([passkey_payload(key) for key in keys])


class PasskeyRegisterOptionsView(SignedInAPIView):
    """Creation options for a new passkey (``password`` or a recent
    reauthentication)."""

    scope = "passkeys"
    serializer_class = OptionalPasswordSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        options = services.registration_options(
            **self.proof(request, values),
        )
        return Response({"options": options})


class PasskeyRegisterView(SignedInAPIView):
    """The browser's answer to the creation options: the passkey is added."""

    scope = "passkeys"
    serializer_class = PasskeyRegisterSerializer

    @sensitive_variables()  # the first passkey's answer holds recovery codes
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        added = services.register_passkey(
            user=self.account(request),
            credential=values["credential"],
            name=values.get("name", ""),
            meta=self.meta(request),
        )
        answer = passkey_payload(added.passkey)
        if added.recovery_codes is not None:
            answer["recovery_codes"] = added.recovery_codes
        return Response(answer, status=status.HTTP_201_CREATED)


class PasskeyDetailView(SignedInAPIView):
    """``PATCH`` renames one of the caller's passkeys, ``DELETE`` removes it;
    both need the ``password`` or a recent reauthentication."""

    scope = "passkeys"
    http_method_names = ["patch", "delete", "options"]

    @sensitive_variables()
    def patch(self, request: Request, passkey_id: str) -> Response:
        serializer = PasskeyRenameSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        passkey = services.rename_passkey(
            passkey_id=passkey_id,
            name=values["name"],
            **self.proof(request, values),
        )
        return Response(passkey_payload(passkey))

    @sensitive_variables()
    def delete(self, request: Request, passkey_id: str) -> Response:
        serializer = OptionalPasswordSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.remove_passkey(
            passkey_id=passkey_id, **self.proof(request, serializer.validated_data)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasskeyLoginOptionsView(AuthAPIView):
    """Request options for a passwordless sign-in and their ``challenge_id``.
    Limited per IP only: no account is named yet."""

    scope = "passkey_login_options"
    http_method_names = ["post", "options"]

    def post(self, request: Request) -> Response:
        found = services.passkey_login_options()
        return Response({"challenge_id": found.challenge_id, "options": found.options})


class PasskeyLoginView(AuthAPIView):
    """A passkey's answer: a sign-in, no second step (the user was verified).
    Limited per IP only: an answer names its account by a credential id, which
    is no secret, and a budget keyed by it would let a stranger lock the owner
    out (and tell which ids exist)."""

    scope = "passkey_login"
    serializer_class = PasskeyLoginSerializer
    email_field = None

    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.login_with_passkey(
            challenge_id=values["challenge_id"],
            credential=values["credential"],
            meta=self.meta(request),
        )
        return self.signed_in(request, result)


class MfaPasskeyOptionsView(AuthAPIView):
    """Request options for a passkey as the second step of a sign-in."""

    scope = "mfa_authenticate"
    serializer_class = MfaTokenSerializer
    email_field = None

    @sensitive_variables()
    def account_of(self, request: Request, values: dict[str, Any]) -> Any:
        if not auth_settings.rate(self.scope, "account"):
            return None
        values["owner"] = services.challenge_owner(values["mfa_token"])
        return values["owner"]

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        options = services.passkey_options(mfa_token=values["mfa_token"])
        return Response({"options": options})


class MfaPasskeyAuthenticateView(MfaPasskeyOptionsView):
    """The second step of a sign-in, by passkey."""

    serializer_class = MfaPasskeySerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.complete_with_passkey(
            mfa_token=values["mfa_token"],
            credential=values["credential"],
            meta=self.meta(request),
            owner=values.get("owner"),
        )
        return self.signed_in(request, result)


class ReauthenticationPasskeyOptionsView(SignedInAPIView):
    """Request options for ``reauthenticate/ {"passkey"}``."""

    scope = "reauthenticate"
    http_method_names = ["post", "options"]

    def post(self, request: Request) -> Response:
        options = services.reauthentication_passkey_options(user=self.account(request))
        return Response({"options": options})
