"""The demo page and the dev mailbox; both answer 404 unless DEBUG is on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from kinwise_auth import relying_party

from .models import SentEmail

MAILBOX_SIZE = 50


def _debug_only() -> None:
    if not settings.DEBUG:
        raise Http404


def page(request: HttpRequest) -> HttpResponse:
    """The demo page; also answers at the paths of the emailed links."""
    _debug_only()
    return render(
        request,
        "demo/page.html",
        {
            # The browser transport: the refresh token in an HttpOnly cookie.
            "api": reverse("kinwise_auth_browser:csrf").removesuffix("csrf/"),
            # Passkeys work where the page's host is the relying party's id.
            "rp_id": relying_party.rp_id(),
        },
    )


def mailbox(request: HttpRequest) -> HttpResponse:
    """Every email the worker sent, newest first, text and HTML parts."""
    _debug_only()
    return render(
        request,
        "demo/mailbox.html",
        {"emails": SentEmail.objects.all()[:MAILBOX_SIZE]},
    )


def mailbox_json(request: HttpRequest) -> JsonResponse:
    """The newest emails as JSON, for the demo page (``?to=`` filters)."""
    _debug_only()
    emails = SentEmail.objects.all()
    if to := request.GET.get("to", "").strip():
        emails = emails.filter(to__iexact=to)
    data: list[dict[str, Any]] = [
        {
            "id": email.pk,
            "subject": email.subject,
            "to": email.recipients,
            "text": email.text,
            "created_at": email.created_at.isoformat(),
        }
        for email in emails[:MAILBOX_SIZE]
    ]
    return JsonResponse({"emails": data})
