from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from kinwise_auth.models import (
    Authenticator,
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
    Session,
)
from kinwise_auth.services import RequestMeta, register_user, request_login_code
from kinwise_auth.services.sessions import revoke_sessions

from .conftest import PASSWORD, session_tokens

# Revocations reach the cache when their transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"
SESSIONS = "admin:kinwise_auth_session_changelist"
IDENTITIES = "admin:kinwise_auth_emailidentity_changelist"


@pytest.fixture
def admin_client_(make_user: Any) -> Client:
    user = make_user("root@example.com")
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


def sid(tokens: dict[str, str]) -> str:
    return str(AccessToken(tokens["access"])["sid"])


def end(tokens: dict[str, str]) -> None:
    """Sign the pair's session out, as a logout does."""
    revoke_sessions(Session.objects.filter(public_id=sid(tokens)), reason="logout")


def me(tokens: dict[str, str]) -> int:
    """The status of ``me/`` asked with the pair's access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return int(client.get(AUTH + "me/").status_code)


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


def test_the_session_admin_never_shows_refresh_token_ids(
    admin_client_: Client, alice: Any, settings: Any
) -> None:
    settings.SIMPLE_JWT = {"ROTATE_REFRESH_TOKENS": True}
    tokens = session_tokens(alice)
    rotated = APIClient().post(
        AUTH + "token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert rotated.status_code == 200
    session = Session.objects.get()
    assert session.refresh_jti and session.previous_jti

    listing = admin_client_.get(reverse(SESSIONS))
    detail = admin_client_.get(
        reverse("admin:kinwise_auth_session_change", args=[session.pk])
    )

    assert listing.status_code == detail.status_code == 200
    assert "alice@example.com" in listing.content.decode()
    assert str(session.public_id) in detail.content.decode()
    for page in (listing, detail):
        html = page.content.decode()
        assert session.refresh_jti not in html
        assert session.previous_jti not in html
        assert "refresh token id" not in html
    assert (
        admin_client_.get(reverse("admin:kinwise_auth_session_add")).status_code == 403
    )


def test_sessions_are_found_by_email_or_session_id(
    admin_client_: Client, alice: Any, make_user: Any
) -> None:
    bob = make_user("bob@example.com")
    session_tokens(alice)
    session_tokens(alice)
    bobs = session_tokens(bob)

    by_email = admin_client_.get(reverse(SESSIONS), {"q": "Alice@Example.com"})
    by_id = admin_client_.get(reverse(SESSIONS), {"q": sid(bobs)})

    assert [s.user for s in by_email.context["cl"].result_list] == [alice, alice]
    assert [str(s.public_id) for s in by_id.context["cl"].result_list] == [sid(bobs)]


def test_the_revoke_action_ends_the_selected_live_sessions(
    admin_client_: Client, alice: Any
) -> None:
    chosen, kept, ended = (session_tokens(alice) for _ in range(3))
    end(ended)
    assert me(chosen) == 200  # the cache now holds the session as live
    selected = Session.objects.filter(public_id__in=[sid(chosen), sid(ended)])

    response = admin_client_.post(
        reverse(SESSIONS),
        {"action": "revoke", "_selected_action": [s.pk for s in selected]},
        follow=True,
    )

    assert "1 session revoked." in response.content.decode()
    rows = {str(s.public_id): s for s in Session.objects.all()}
    assert rows[sid(chosen)].revoked_at is not None
    assert rows[sid(chosen)].revoked_reason == "admin"
    assert rows[sid(ended)].revoked_reason == "logout"
    assert rows[sid(kept)].revoked_at is None
    assert me(chosen) == 401
    assert me(kept) == 200


def test_sessions_are_revoked_never_deleted(admin_client_: Client, alice: Any) -> None:
    tokens = session_tokens(alice)
    session = Session.objects.get(public_id=sid(tokens))

    response = admin_client_.post(
        reverse("admin:kinwise_auth_session_delete", args=[session.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Session.objects.filter(pk=session.pk).exists()
    assert me(tokens) == 200


def test_view_permission_alone_cannot_revoke(make_user: Any, alice: Any) -> None:
    staff = make_user("viewer@example.com")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(
        Permission.objects.get(
            codename="view_session", content_type__app_label="kinwise_auth"
        )
    )
    client = Client()
    client.force_login(staff)
    tokens = session_tokens(alice)

    page = client.get(reverse(SESSIONS))
    client.post(
        reverse(SESSIONS),
        {"action": "revoke", "_selected_action": [Session.objects.get().pk]},
    )

    assert page.status_code == 200
    assert b'value="revoke"' not in page.content
    assert Session.objects.get().revoked_at is None
    assert me(tokens) == 200


def test_the_identity_admin_links_to_the_users_sessions(
    admin_client_: Client, alice: Any, make_user: Any
) -> None:
    session_tokens(alice)
    end(session_tokens(alice))
    session_tokens(make_user("bob@example.com"))
    link = f"{reverse(SESSIONS)}?user__id__exact={alice.pk}"

    listing = admin_client_.get(reverse(IDENTITIES))
    detail = admin_client_.get(
        reverse(
            "admin:kinwise_auth_emailidentity_change",
            args=[alice.kinwise_identity.pk],
        )
    )
    linked = admin_client_.get(link)

    for page in (listing, detail):
        assert f'<a href="{link}">1</a>' in page.content.decode()  # one live
    assert linked.status_code == 200
    assert [s.user for s in linked.context["cl"].result_list] == [alice, alice]


def test_the_changelists_queries_do_not_grow_with_their_rows(
    admin_client_: Client, make_user: Any
) -> None:
    def queries(name: str) -> int:
        with CaptureQueriesContext(connection) as context:
            assert admin_client_.get(reverse(name)).status_code == 200
        return len(context.captured_queries)

    session_tokens(make_user("user0@example.com"))
    for name in (SESSIONS, IDENTITIES):
        queries(name)  # warm the per-process caches (content types)
    few = {name: queries(name) for name in (SESSIONS, IDENTITIES)}
    for i in range(1, 5):
        user = make_user(f"user{i}@example.com")
        session_tokens(user)
        end(session_tokens(user))

    many = {name: queries(name) for name in (SESSIONS, IDENTITIES)}

    assert many == few


# --- second factors ------------------------------------------------------------


def enable_totp(user: Any) -> str:
    from django.utils import timezone

    from kinwise_auth.services.factors import recovery_codes, totp

    secret = totp.new_secret()
    Authenticator.objects.create(
        user=user,
        kind=Authenticator.Kind.TOTP,
        secret=totp.sealed(secret, user.pk),
        confirmed_at=timezone.now(),
    )
    recovery_codes.issue(user)
    return secret


def test_factors_are_listed_without_their_secrets(
    admin_client_: Client, alice: Any
) -> None:
    secret = enable_totp(alice)
    row = Authenticator.objects.get()

    listing = admin_client_.get(reverse("admin:kinwise_auth_authenticator_changelist"))
    detail = admin_client_.get(
        reverse("admin:kinwise_auth_authenticator_change", args=[row.pk])
    )

    for page in (listing, detail):
        assert page.status_code == 200
        html = page.content.decode()
        assert secret not in html and row.secret not in html
    assert "alice@example.com" in listing.content.decode()


def test_an_operator_resets_an_accounts_two_step_sign_in(
    admin_client_: Client, alice: Any, broker: Any
) -> None:
    enable_totp(alice)
    identity = EmailIdentity.objects.get(user=alice)

    response = admin_client_.post(
        reverse("admin:kinwise_auth_emailidentity_changelist"),
        {"action": "reset_two_step", "_selected_action": [identity.pk]},
        follow=True,
    )

    assert "Two-step sign-in reset for 1 account." in response.content.decode()
    assert not Authenticator.objects.filter(user=alice).exists()
    event = AuthEvent.objects.get(event_type="mfa_changed")
    assert event.extra == {"change": "factors_reset"} and event.ip == "127.0.0.1"
    assert OutboxEmail.objects.filter(
        kind=OutboxEmail.Kind.MFA_CHANGED, context={"change": "factors_reset"}
    ).exists()
    # The account now signs in by password alone.
    login = APIClient().post(
        AUTH + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )
    assert set(login.json()) == {"access", "refresh", "user"}


def test_view_permission_alone_cannot_reset_factors(make_user: Any, alice: Any) -> None:
    enable_totp(alice)
    staff = make_user("viewer@example.com")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(
        Permission.objects.get(codename="view_emailidentity"),
        Permission.objects.get(codename="change_emailidentity"),
    )
    client = Client()
    client.force_login(staff)
    identity = EmailIdentity.objects.get(user=alice)

    client.post(
        reverse("admin:kinwise_auth_emailidentity_changelist"),
        {"action": "reset_two_step", "_selected_action": [identity.pk]},
    )

    assert Authenticator.objects.filter(user=alice).exists()


def test_passkeys_are_listed_without_key_material_and_reset_with_the_rest(
    admin_client_: Client, alice: Any, broker: Any
) -> None:
    from kinwise_auth.models import Passkey

    passkey = Passkey.objects.create(
        user=alice,
        credential_id=b"credential-id-of-alice",
        public_key=b"public-key-of-alice",
        user_handle=b"handle",
        aaguid="00000000-0000-0000-0000-000000000000",
        name="Laptop",
    )
    listing = admin_client_.get(reverse("admin:kinwise_auth_passkey_changelist"))
    detail = admin_client_.get(
        reverse("admin:kinwise_auth_passkey_change", args=[passkey.pk])
    )
    for page in (listing, detail):
        assert page.status_code == 200
        html = page.content.decode()
        assert "Laptop" in html
        for secretish in (b"credential-id-of-alice", b"public-key-of-alice"):
            assert secretish.decode() not in html and secretish.hex() not in html

    identity = EmailIdentity.objects.get(user=alice)
    response = admin_client_.post(
        reverse("admin:kinwise_auth_emailidentity_changelist"),
        {"action": "reset_two_step", "_selected_action": [identity.pk]},
    )

    assert response.status_code == 302
    assert not Passkey.objects.exists()
