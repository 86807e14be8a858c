"""The browser transport: the same endpoints, the refresh token in a cookie.

``include("kinwise_auth.urls.browser")`` serves every endpoint of the app
transport through :class:`BrowserTransport`, which

* checks Django's CSRF rules on every unsafe request, before the body is read
  (403 ``csrf_failed``): the ``csrftoken`` cookie echoed in ``X-CSRFToken``, and
  an ``Origin`` of this site or of ``CSRF_TRUSTED_ORIGINS``;
* moves a refresh token out of any answer into an ``HttpOnly`` cookie, one per
  path that reads it (``token/refresh/`` and ``logout/``), so JavaScript never
  holds one;
* hands ``token/refresh/`` and ``logout/`` the cookie's token and never reads a
  body ``refresh``;
* clears the cookies when the session ends here: logout, a refresh refused, the
  caller's own session ended, the account deleted.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.debug import sensitive_variables
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt import settings as jwt_settings

from .conf import auth_settings
from .errors import AuthError, TokenJustRotated, TokenNotValid
from .views import AuthAPIView, LogoutView

__all__ = ["CsrfFailed", "BrowserTransport", "CsrfView", "browser_view"]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


class CsrfFailed(AuthError):
    code = "csrf_failed"
    status = 403
    default_detail = _(
        "CSRF check failed: send the csrftoken cookie's value (from GET csrf/) "
        "in the X-CSRFToken header, from an allowed origin."
    )


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF rules, answering the reason instead of a 403 page."""

    def _reject(self, request: Any, reason: str) -> Any:
        return reason


def _no_response(request: Any) -> Any:
    return None  # never called: only the checks run


def enforce_csrf(request: Request) -> None:
    """Raise :class:`CsrfFailed` unless the request passes Django's CSRF check."""
    check = _CsrfCheck(_no_response)
    django_request = request._request
    check.process_request(django_request)
    if check.process_view(django_request, _no_response, (), {}) is not None:
        raise CsrfFailed()


class BrowserTransport:
    """Mixed into each endpoint's view by :mod:`kinwise_auth.urls.browser`."""

    # The view's own (annotations only: no value here shadows the view's).
    takes_refresh: ClassVar[bool]
    signed_out: bool

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method not in SAFE_METHODS:
            enforce_csrf(request)

    @sensitive_variables()
    def handle(self, request: Request, data: Any) -> Response:
        if self.takes_refresh:
            # The body is never parsed: a ``refresh`` in it is ignored.
            token = request.COOKIES.get(_cookie_for(self), "")
            if not token:
                if isinstance(self, LogoutView):
                    self.signed_out = True
                    return Response(status=205)  # no session here to end
                raise TokenNotValid()
            data = {"refresh": token}
        return super().handle(request, data)  # type: ignore[misc]

    def handle_exception(self, exc: Exception) -> Any:
        # Another tab's refresh rotated the token a moment ago: the cookie this
        # browser now holds is the new one, so it stays.
        self._keep_cookie = isinstance(exc, TokenJustRotated)
        return super().handle_exception(exc)  # type: ignore[misc]

    @sensitive_variables()
    def finalize_response(
        self, request: Request, response: Any, *args: Any, **kwargs: Any
    ) -> Any:
        response = super().finalize_response(  # type: ignore[misc]
            request, response, *args, **kwargs
        )
        data = getattr(response, "data", None)
        if isinstance(data, dict) and "refresh" in data:
            # Not rendered yet: the body is rendered from ``data`` later.
            set_refresh_cookies(request, response, str(data.pop("refresh")))
        elif self.signed_out or (
            self.takes_refresh
            and response.status_code == 401
            and not getattr(self, "_keep_cookie", False)
        ):
            clear_refresh_cookies(request, response)
        return response


def cookie_name() -> str:
    """The refresh cookie ``token/refresh/`` reads; ``logout/``'s adds ``_logout``."""
    return str(auth_settings.BROWSER_REFRESH_COOKIE["name"])


def _cookie_for(view: Any) -> str:
    return cookie_name() + ("_logout" if isinstance(view, LogoutView) else "")


def _cookie_paths(request: Request) -> dict[str, str]:
    """Cookie name -> the one path that reads it, under this prefix."""
    namespace = getattr(request._request.resolver_match, "namespace", "")
    prefix = f"{namespace}:" if namespace else ""
    name = cookie_name()
    return {
        name: reverse(prefix + "token-refresh"),
        f"{name}_logout": reverse(prefix + "logout"),
    }


def set_refresh_cookies(request: Request, response: Any, refresh: str) -> None:
    options = auth_settings.BROWSER_REFRESH_COOKIE
    lifetime = jwt_settings.api_settings.REFRESH_TOKEN_LIFETIME
    for name, path in _cookie_paths(request).items():
        response.set_cookie(
            name,
            refresh,
            max_age=int(lifetime.total_seconds()),
            path=path,
            domain=options.get("domain"),
            secure=bool(options.get("secure", True)),
            httponly=True,
            samesite=options.get("samesite", "Lax"),
        )


def clear_refresh_cookies(request: Request, response: Any) -> None:
    options = auth_settings.BROWSER_REFRESH_COOKIE
    for name, path in _cookie_paths(request).items():
        response.delete_cookie(
            name,
            path=path,
            domain=options.get("domain"),
            samesite=options.get("samesite", "Lax"),
        )


class CsrfView(AuthAPIView):
    """``GET csrf/``: sets the ``csrftoken`` cookie and answers its value, for
    the SPA to echo in ``X-CSRFToken`` (a page on another host cannot read
    this site's cookies)."""

    scope = "csrf"
    http_method_names = ["get", "head", "options"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return ensure_csrf_cookie(super().as_view(**initkwargs))

    def get(self, request: Request) -> Response:
        return Response({"csrf_token": get_token(request._request)})


def browser_view(view: type[AuthAPIView]) -> Any:
    """``view`` served through the browser transport."""
    browser = cast(
        type[AuthAPIView],
        type(
            f"Browser{view.__name__}",
            (BrowserTransport, view),
            {"__module__": __name__},
        ),
    )
    return browser.as_view()
