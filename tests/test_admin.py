from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from kinwise_auth.models import (
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
)
from kinwise_auth.services import RequestMeta, register_user, request_login_code

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client_(make_user: Any) -> Client:
    user = make_user("root@example.com")
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model", [EmailIdentity, LinkToken, LoginCode, OutboxEmail, AuthEvent]
)
def test_changelists_render_and_are_read_only(
    admin_client_: Client, model: Any
) -> None:
    register_user(email="a@example.com", password=PASSWORD, meta=RequestMeta())
    request_login_code(email="root@example.com", meta=RequestMeta())
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    obj = model.objects.first()
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])

    listing = admin_client_.get(changelist)
    detail = admin_client_.get(change)

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert (
        admin_client_.get(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        ).status_code
        == 403
    )


def test_token_and_code_hashes_are_never_shown(admin_client_: Client) -> None:
    register_user(email="a@example.com", password=PASSWORD, meta=RequestMeta())
    request_login_code(email="root@example.com", meta=RequestMeta())
    token = LinkToken.objects.get()
    code = LoginCode.objects.get()
    pages = [
        admin_client_.get(reverse("admin:kinwise_auth_linktoken_changelist")),
        admin_client_.get(
            reverse("admin:kinwise_auth_linktoken_change", args=[token.pk])
        ),
        admin_client_.get(reverse("admin:kinwise_auth_logincode_changelist")),
        admin_client_.get(
            reverse("admin:kinwise_auth_logincode_change", args=[code.pk])
        ),
    ]
    for page in pages:
        assert page.status_code == 200
        assert token.token_hash not in page.content.decode()
        assert code.code_hash not in page.content.decode()


def test_requeue_action_sends_a_failed_email(admin_client_: Client) -> None:
    register_user(email="a@example.com", password=PASSWORD, meta=RequestMeta())
    row = OutboxEmail.objects.get()
    OutboxEmail.objects.filter(pk=row.pk).update(status=OutboxEmail.Status.FAILED)
    mail.outbox.clear()

    response = admin_client_.post(
        reverse("admin:kinwise_auth_outboxemail_changelist"),
        {"action": "requeue", "_selected_action": [row.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "1 email re-queued." in response.content.decode()
    row.refresh_from_db()
    assert row.status == OutboxEmail.Status.SENT
    assert len(mail.outbox) == 1
    assert get_user_model()._default_manager.count() == 2
