"""The one place for business rules.

Services take plain keyword values and a :class:`RequestMeta`, never a request;
they raise :class:`~kinwise_auth.errors.AuthError`.
"""

from __future__ import annotations

from .account import delete_account
from .email_change import confirm_email_change, request_email_change
from .email_verification import (
    Verification,
    resend_verification,
    verify_email,
)
from .login_code import request_login_code, verify_login_code
from .meta import RequestMeta
from .mfa_enrolment import (
    FactorsStatus,
    TotpSetup,
    confirm_totp,
    disable_totp,
    factors_status,
    renew_recovery_codes,
    setup_totp,
)
from .mfa_sign_in import (
    MfaRequired,
    challenge_owner,
    complete,
    complete_with_passkey,
    passkey_options,
)
from .passkey_sign_in import (
    PasskeyLoginOptions,
    login_with_passkey,
    passkey_login_options,
)
from .passkeys import (
    NewPasskey,
    list_passkeys,
    register_passkey,
    registration_options,
    remove_passkey,
    rename_passkey,
)
from .password import change_password, request_password_reset, reset_password
from .password_login import login_with_password
from .registration import Registration, register_user
from .secrets import link_owner
from .session_list import (
    SessionSummary,
    end_session,
    list_sessions,
    reauthenticate,
    reauthentication_passkey_options,
    request_reauthentication_code,
    revoke_by_link,
    revoke_other_sessions,
)
from .sessions import (
    SignIn,
    logout,
    parse_refresh,
    refresh_claims,
    refresh_session,
    refresh_token_user_id,
    sign_in,
)

__all__ = [
    "RequestMeta",
    "Registration",
    "register_user",
    "Verification",
    "link_owner",
    "verify_email",
    "resend_verification",
    "request_login_code",
    "verify_login_code",
    "login_with_password",
    "SignIn",
    "sign_in",
    "parse_refresh",
    "refresh_session",
    "refresh_token_user_id",
    "refresh_claims",
    "logout",
    "request_password_reset",
    "reset_password",
    "change_password",
    "request_email_change",
    "confirm_email_change",
    "delete_account",
    "SessionSummary",
    "list_sessions",
    "end_session",
    "reauthenticate",
    "revoke_other_sessions",
    "revoke_by_link",
    "request_reauthentication_code",
    "TotpSetup",
    "FactorsStatus",
    "setup_totp",
    "confirm_totp",
    "disable_totp",
    "renew_recovery_codes",
    "factors_status",
    "MfaRequired",
    "challenge_owner",
    "complete",
    "passkey_options",
    "complete_with_passkey",
    "reauthentication_passkey_options",
    "NewPasskey",
    "registration_options",
    "register_passkey",
    "list_passkeys",
    "rename_passkey",
    "remove_passkey",
    "PasskeyLoginOptions",
    "passkey_login_options",
    "login_with_passkey",
]
