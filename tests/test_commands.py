from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from kinwise_auth.models import AuthEvent, EmailIdentity, LinkToken, OutboxEmail
from kinwise_auth.services import RequestMeta, register_user

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def plain_user(email: str, *, active: bool = True, username: str | None = None) -> Any:
    user_model = get_user_model()
    fields: dict[str, Any] = {user_model.get_email_field_name(): email}
    if user_model.get_email_field_name() != user_model.USERNAME_FIELD:
        fields[user_model.USERNAME_FIELD] = username or email
    return user_model._default_manager.create_user(
        password=PASSWORD, is_active=active, **fields
    )


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_backfill_creates_identities_and_reports_collisions() -> None:
    active = plain_user("Carol@Example.com")
    inactive = plain_user("dave@example.com", active=False)
    plain_user("Erin@example.com", username="erin1")
    if get_user_model().USERNAME_FIELD != "email":
        # auth.User's email is not unique: two users may share one mailbox.
        plain_user("erin@EXAMPLE.com", username="erin2")

    dry, _ = run("kinwise_auth_backfill", "--dry-run")
    assert not EmailIdentity.objects.exists()
    out, err = run("kinwise_auth_backfill")

    assert EmailIdentity.objects.get(user=active).verified_at is not None
    assert (
        EmailIdentity.objects.get(user=active).email_normalized == "carol@example.com"
    )
    # An inactive user was deactivated by the host: never pending, never purged.
    assert EmailIdentity.objects.get(user=inactive).verified_at is not None
    if get_user_model().USERNAME_FIELD != "email":
        assert "would create 2 identities; 1 collision(s)" in dry
        assert "collision: 'erin@example.com'" in err
        assert not EmailIdentity.objects.filter(email_normalized="erin@example.com")
    else:
        assert "created 3 identities; 0 collision(s)" in out
    assert run("kinwise_auth_backfill")[0].startswith("created 0 identities")


def test_backfill_can_make_inactive_users_pending() -> None:
    inactive = plain_user("dave@example.com", active=False)

    run("kinwise_auth_backfill", "--inactive-pending")

    assert EmailIdentity.objects.get(user=inactive).verified_at is None


def identity_with_key(email: str, key: str) -> EmailIdentity:
    """An identity stored under an older normal form's ``key``."""
    return EmailIdentity.objects.create(
        user=plain_user(email), email=email, email_normalized=key
    )


@pytest.fixture
def old_keys() -> dict[str, EmailIdentity]:
    """Identities keyed as the normal form before 0.1 keyed them (NFKC, casefold)."""
    return {
        "idn": identity_with_key("cm@ex\u00e4mple.com", "cm@ex\u00e4mple.com"),
        "ace": identity_with_key("cm@xn--exmple-cua.com", "cm@xn--exmple-cua.com"),
        "quoted": identity_with_key('"eve"@example.com', '"eve"@example.com'),
        "soft": identity_with_key("s\u00e9b@exa\u00admple.com", "seb-soft"),
        "plain": identity_with_key("Ann@example.com", "ann@example.com"),
    }


def test_backfill_reports_identities_the_normal_form_would_merge_or_refuse(
    old_keys: dict[str, EmailIdentity],
) -> None:
    dry, err = run("kinwise_auth_backfill", "--dry-run")

    idn, ace = old_keys["idn"].pk, old_keys["ace"].pk
    assert (
        f"would merge: 'cm@xn--exmple-cua.com' held by identities {idn}, {ace}" in err
    )
    assert f"refused: identity {old_keys['soft'].pk}" in err
    assert "invisible characters" in err
    assert "would re-key 1." in dry  # the quoted address, alone on its new key
    assert EmailIdentity.objects.get(pk=old_keys["quoted"].pk).email_normalized == (
        '"eve"@example.com'
    )

    out, _ = run("kinwise_auth_backfill")

    assert "re-keyed 1." in out
    keys = dict(EmailIdentity.objects.values_list("pk", "email_normalized"))
    assert keys[old_keys["quoted"].pk] == "eve@example.com"
    # What would merge or is refused is left exactly as it was.
    assert keys[idn] == "cm@ex\u00e4mple.com"
    assert keys[ace] == "cm@xn--exmple-cua.com"
    assert keys[old_keys["soft"].pk] == "seb-soft"
    assert keys[old_keys["plain"].pk] == "ann@example.com"


def test_redrive_command(settings: Any) -> None:
    register_user(email="a@example.com", password=PASSWORD, meta=RequestMeta())
    OutboxEmail.objects.update(
        status=OutboxEmail.Status.PENDING,
        available_at=timezone.now() - timedelta(hours=1),
    )

    out, _ = run("kinwise_auth_redrive")

    assert out.strip() == "Re-published 1 outbox email(s)."
    assert OutboxEmail.objects.get().status == OutboxEmail.Status.SENT


def test_purge_deletes_only_what_expired() -> None:
    register_user(email="a@example.com", password=PASSWORD, meta=RequestMeta())
    long_ago = timezone.now() - timedelta(days=400)
    LinkToken.objects.update(expires_at=long_ago)
    OutboxEmail.objects.update(created_at=long_ago)
    AuthEvent.objects.update(created_at=long_ago)
    register_user(email="b@example.com", password=PASSWORD, meta=RequestMeta())

    out, _ = run("kinwise_auth_purge")

    assert "link_tokens: 1 deleted" in out
    assert "outbox_emails: 1 deleted" in out
    assert "auth_events: 1 deleted" in out
    assert LinkToken.objects.count() == 1
    assert OutboxEmail.objects.count() == 1
    assert AuthEvent.objects.count() == 1


def test_purge_works_in_bounded_batches(settings: Any) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "PURGE_BATCH": 2}
    for n in range(5):
        register_user(email=f"u{n}@example.com", password=PASSWORD, meta=RequestMeta())
    LinkToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from kinwise_auth import maintenance

    with CaptureQueriesContext(connection) as queries:
        counts = maintenance.purge_expired()

    assert counts["link_tokens"] == 5
    deletes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('DELETE FROM "kinwise_auth_linktoken"')
    ]
    assert len(deletes) == 3  # 2 + 2 + 1: no statement holds more than a batch
    assert not LinkToken.objects.exists()
