"""System checks for the ``KINWISE_AUTH`` settings (IDs ``kinwise_auth.E0xx/W0xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from . import relying_party
from .conf import DEFAULTS, IMPORT_STRINGS, auth_settings
from .serializers import LOGIN_CODE_MAX_LENGTH

__all__ = [
    "check_unknown_keys",
    "check_frontend_url",
    "check_rate_limits",
    "check_rate_limit_cache",
    "check_account_deletion",
    "check_login_code_length",
    "check_hooks",
    "check_blacklist_app",
    "check_celery_app",
    "check_authentication_backend",
    "check_browser_cookie",
    "check_webauthn",
]

# Caches each process keeps to itself: a limit there is per process, not global.
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.security)
def check_unknown_keys(**kwargs: Any) -> list[CheckMessage]:
    unknown = sorted(set(auth_settings.user_settings) - set(DEFAULTS))
    return [
        Error(
            f"Unknown KINWISE_AUTH setting {key!r}.",
            hint="See the settings reference for the valid keys.",
            id="kinwise_auth.E001",
        )
        for key in unknown
    ]


@register(Tags.security)
def check_frontend_url(**kwargs: Any) -> list[CheckMessage]:
    url = str(auth_settings.FRONTEND_URL or "")
    if not url and not settings.DEBUG:
        return [
            Error(
                "KINWISE_AUTH['FRONTEND_URL'] is not set.",
                hint="Emailed links are built from it, never from the request's "
                "Host header. Set it to your frontend's origin, e.g. "
                "'https://app.example.com'.",
                id="kinwise_auth.E002",
            )
        ]
    if url and not url.startswith(("https://", "http://")):
        return [
            Error(
                f"KINWISE_AUTH['FRONTEND_URL'] {url!r} is not an http(s) URL.",
                hint="Use an absolute URL such as 'https://app.example.com'.",
                id="kinwise_auth.E003",
            )
        ]
    return []


def _rate_is_valid(rate: Any) -> bool:
    if rate is None:
        return True
    if not isinstance(rate, str):
        return False
    count, _, period = rate.partition("/")
    if not count.isdigit() or not period:
        return False
    multiplier, unit = period[:-1], period[-1]
    return unit in "smhd" and (multiplier == "" or multiplier.isdigit())


@register(Tags.security)
def check_rate_limits(**kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    given = auth_settings.user_settings.get("RATE_LIMITS", {})
    if not isinstance(given, dict) or not all(
        isinstance(rates, dict) for rates in given.values()
    ):
        return [
            Error(
                "KINWISE_AUTH['RATE_LIMITS'] must be a dict of scope -> "
                "{'ip': rate, 'email': rate}.",
                id="kinwise_auth.E004",
            )
        ]
    for scope, rates in auth_settings.RATE_LIMITS.items():
        for kind, rate in rates.items():
            if kind not in ("ip", "email", "account") or not _rate_is_valid(rate):
                errors.append(
                    Error(
                        f"Bad rate limit {scope}.{kind} = {rate!r}.",
                        hint="Keys are 'ip', 'email' and 'account'; a rate is "
                        "'N/period' such "
                        "as '3/h' or '5/10m' (units s, m, h, d), or None for no "
                        "limit.",
                        id="kinwise_auth.E005",
                    )
                )
    return errors


@register(Tags.security, Tags.caches)
def check_rate_limit_cache(**kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG or not getattr(settings, "RATELIMIT_ENABLE", True):
        return []
    alias = getattr(settings, "RATELIMIT_USE_CACHE", "default")
    backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
    if backend in PROCESS_LOCAL_CACHES:
        return [
            Error(
                f"The rate-limit cache {alias!r} ({backend}) is not shared between "
                "processes, so each web process would count on its own.",
                hint="Point RATELIMIT_USE_CACHE at a shared cache such as "
                "django.core.cache.backends.redis.RedisCache.",
                id="kinwise_auth.E006",
            )
        ]
    return []


@register
def check_account_deletion(**kwargs: Any) -> list[CheckMessage]:
    mode = auth_settings.ACCOUNT_DELETION
    if mode in ("delete", "deactivate"):
        return []
    return [
        Error(
            f"KINWISE_AUTH['ACCOUNT_DELETION'] is {mode!r}.",
            hint="Use 'delete' or 'deactivate'.",
            id="kinwise_auth.E008",
        )
    ]


# Six digits keep three guesses per code at three in a million; otp/verify/
# accepts no more than LOGIN_CODE_MAX_LENGTH, so a longer code could never be
# entered.
LOGIN_CODE_LENGTH_BOUNDS = (6, LOGIN_CODE_MAX_LENGTH)


@register(Tags.security)
def check_login_code_length(**kwargs: Any) -> list[CheckMessage]:
    length = auth_settings.LOGIN_CODE_LENGTH
    low, high = LOGIN_CODE_LENGTH_BOUNDS
    whole = isinstance(length, int) and not isinstance(length, bool)
    if whole and low <= length <= high:
        return []
    return [
        Error(
            f"KINWISE_AUTH['LOGIN_CODE_LENGTH'] is {length!r}.",
            hint=f"Use a whole number of digits from {low} to {high}: fewer make "
            f"codes guessable, and otp/verify/ accepts at most {high}.",
            id="kinwise_auth.E009",
        )
    ]


@register
def check_hooks(**kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for key in IMPORT_STRINGS:
        value = auth_settings.user_settings.get(key, DEFAULTS[key])
        if isinstance(value, str):
            try:
                import_string(value)
            except ImportError as exc:
                errors.append(
                    Error(
                        f"KINWISE_AUTH[{key!r}] = {value!r} cannot be imported: {exc}",
                        id="kinwise_auth.E007",
                    )
                )
    return errors


@register(Tags.security)
def check_blacklist_app(**kwargs: Any) -> list[CheckMessage]:
    if "rest_framework_simplejwt.token_blacklist" in settings.INSTALLED_APPS:
        return []
    return [
        Warning(
            "rest_framework_simplejwt.token_blacklist is not installed.",
            hint="Without it, logout and password changes cannot revoke refresh "
            "tokens. Add it to INSTALLED_APPS.",
            id="kinwise_auth.W001",
        )
    ]


def _is_celerys_fallback_app(app: Any) -> bool:
    """Celery's own ``default`` app, made when no app of the project was created:
    it publishes to ``amqp://localhost``, to a broker and queue nobody reads."""
    return getattr(app, "main", None) == "default" and not getattr(app, "fixups", True)


@register
def check_celery_app(**kwargs: Any) -> list[CheckMessage]:
    from .tasks import deliver

    if not _is_celerys_fallback_app(deliver.app):
        return []
    return [
        Error(
            "kinwise_auth's tasks would be published through Celery's default app "
            "(broker amqp://localhost), not your project's: its Celery app is never "
            "imported when Django starts.",
            hint="Import it in your project package's __init__.py: "
            "'from .celery import app as celery_app' (see the quickstart). Until "
            "then every email waits for the re-drive, or is never sent.",
            id="kinwise_auth.E010",
        )
    ]


@register(Tags.security)
def check_authentication_backend(**kwargs: Any) -> list[CheckMessage]:
    from .backends import EmailBackend

    for path in settings.AUTHENTICATION_BACKENDS:
        try:
            backend = import_string(path)
        except ImportError:
            continue  # Django reports it when it authenticates
        if isinstance(backend, type) and issubclass(backend, EmailBackend):
            return []
    return [
        Error(
            "kinwise_auth.backends.EmailBackend is not in AUTHENTICATION_BACKENDS: "
            "login/ answers invalid_credentials to the right password.",
            hint="Add 'kinwise_auth.backends.EmailBackend' to "
            "AUTHENTICATION_BACKENDS (before ModelBackend, which the admin's "
            "sign-in by username may keep).",
            id="kinwise_auth.E011",
        )
    ]


@register
def check_email_timeout(**kwargs: Any) -> list[CheckMessage]:
    email_timeout = getattr(settings, "EMAIL_TIMEOUT", None)
    claim = auth_settings.claim_timeout().total_seconds()
    if not email_timeout:
        problem = (
            "EMAIL_TIMEOUT is not set: a hung SMTP server holds a worker for ever, "
            "and an email whose worker died waits five minutes (the claim timeout "
            "it falls back to) before another worker sends it."
        )
    elif float(email_timeout) >= claim:
        problem = (
            f"EMAIL_TIMEOUT ({email_timeout} s) is not below OUTBOX_CLAIM_TIMEOUT "
            f"({claim:g} s): a slow send outlives its claim, and another worker may "
            "send the same email."
        )
    else:
        return []
    return [
        Warning(
            problem,
            hint="Set EMAIL_TIMEOUT (10 s, say) and leave OUTBOX_CLAIM_TIMEOUT unset: "
            "the claim then follows from it (3 x EMAIL_TIMEOUT + 15 s).",
            id="kinwise_auth.W002",
        )
    ]


@register(Tags.security)
def check_browser_cookie(**kwargs: Any) -> list[CheckMessage]:
    """The refresh cookie's SameSite must be one browsers know, and "None" needs
    Secure: browsers drop a SameSite=None cookie that is not Secure."""
    cookie = auth_settings.BROWSER_REFRESH_COOKIE
    samesite = cookie.get("samesite")
    problem = None
    if samesite not in ("Lax", "Strict", "None"):
        problem = f"samesite is {samesite!r}; use 'Lax', 'Strict' or 'None'."
    elif samesite == "None" and not cookie.get("secure"):
        problem = "samesite 'None' needs secure True: browsers drop such a cookie."
    elif not cookie.get("name"):
        problem = "name is empty."
    if problem is None:
        return []
    return [
        Error(
            f"KINWISE_AUTH['BROWSER_REFRESH_COOKIE']: {problem}",
            hint="See docs/browser.md.",
            id="kinwise_auth.E012",
        )
    ]


@register(Tags.security)
def check_webauthn(**kwargs: Any) -> list[CheckMessage]:
    """The passkey settings. Set explicitly, a wrong RP id or origin is an error;
    derived from ``FRONTEND_URL`` (a development address such as
    ``http://127.0.0.1:8000``), a warning: passkeys alone will not work there."""
    found = relying_party.problems()
    if not found:
        return []
    explicit = bool(auth_settings.WEBAUTHN_RP_ID or auth_settings.WEBAUTHN_ORIGINS)
    kind, check_id = (
        (Error, "kinwise_auth.E013") if explicit else (Warning, "kinwise_auth.W003")
    )
    return [
        kind(
            f"Passkeys: {problem}.",
            hint="Set KINWISE_AUTH['WEBAUTHN_RP_ID'] and ['WEBAUTHN_ORIGINS']; "
            "see docs/passkeys.md.",
            id=check_id,
        )
        for problem in found
    ]
