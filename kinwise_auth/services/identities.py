"""Looking up and creating accounts by email identity."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ..models import EmailIdentity
from ..normalization import email_key_or_none, normalize_email

__all__ = [
    "find_identity",
    "lock_user",
    "create_pending_user",
    "replace_pending_registration",
    "spend_like_a_new_account",
]


def _savepoint_create() -> Any:
    """``transaction.savepoint_create()`` (Django 6.1; ``savepoint()`` before)."""
    create = getattr(transaction, "savepoint_create", None)
    return create() if create is not None else transaction.savepoint()


def find_identity(email: str, *, lock_user: bool = False) -> EmailIdentity | None:
    """The identity holding ``email`` (compared by its normal form), with its user.

    ``lock_user`` locks the user row as :func:`lock_user` does, in the same
    statement. An address with no normal form matches nobody (and costs no query).
    """
    key = email_key_or_none(email)
    if key is None:
        return None
    queryset = EmailIdentity.objects.select_related("user")
    if lock_user:
        queryset = queryset.select_for_update(of=("user",), no_key=True)
    return queryset.filter(email_normalized=key).first()


def lock_user(user_pk: Any) -> AbstractBaseUser | None:
    """Lock the user row (``FOR NO KEY UPDATE``) and return the user, or None.

    Every transaction that changes an account's secrets or refresh tokens takes
    this lock first, so they all lock in one order — user, identity, links and
    codes, then simplejwt's token rows — and none can deadlock another (security
    rule 9). ``NO KEY`` leaves rows that merely reference the user (audit,
    outbox) free to commit meanwhile.
    """
    return (
        get_user_model()
        ._default_manager.select_for_update(no_key=True)
        .filter(pk=user_pk)
        .first()
    )


def _username_for(email: str) -> str | None:
    """A value for a separate ``USERNAME_FIELD``, or None when it is the email."""
    user_model = get_user_model()
    username_field = user_model.USERNAME_FIELD
    if username_field == user_model.get_email_field_name():
        return None
    field = user_model._meta.get_field(username_field)
    max_length = getattr(field, "max_length", None) or 150
    return email if len(email) <= max_length else _generated_username()


def _generated_username() -> str:
    return f"user_{uuid.uuid4().hex}"


@sensitive_variables()
def create_pending_user(
    *, email: str, password: str, profile: dict[str, str]
) -> tuple[Any, EmailIdentity]:
    """Create an inactive user and its identity; IntegrityError if the address is held.

    Runs in a savepoint so that a lost race leaves the caller's transaction usable.
    ``profile`` fields the user model lacks (``first_name``, ``last_name``) are
    dropped.
    """
    user_model = get_user_model()
    field_names = {f.name for f in user_model._meta.get_fields()}
    extra = {k: v for k, v in profile.items() if k in field_names}
    fields: dict[str, Any] = {user_model.get_email_field_name(): email, **extra}
    username = _username_for(email)
    for attempt in range(2):
        if username is not None:
            fields[user_model.USERNAME_FIELD] = username
        try:
            with transaction.atomic():
                user = user_model._default_manager.create_user(
                    password=password, is_active=False, **fields
                )
                identity = EmailIdentity.objects.create(
                    user=user, email=email, email_normalized=normalize_email(email)
                )
                return user, identity
        except IntegrityError:
            # Either another request took the address (the caller handles it), or
            # a user made outside the package already has this username.
            if attempt or username is None or find_identity(email) is not None:
                raise
            username = _generated_username()
    raise AssertionError("unreachable")


@sensitive_variables()
def replace_pending_registration(
    identity: EmailIdentity, *, email: str, password: str, profile: dict[str, str]
) -> None:
    """Give a pending account the newest registration's password, names and spelling.

    A pending account belongs to nobody yet: whoever registered it first keeps
    nothing once someone registers the address again (account pre-hijacking).
    The caller supersedes the links mailed before. Costs what
    :func:`create_pending_user` does — one hash, two writes in a savepoint — so
    the two paths cannot be told apart (security rule 5). Call it with the user
    row locked (:func:`lock_user`).
    """
    user = identity.user
    user_model = get_user_model()
    user.set_password(password)
    fields = ["password", user_model.get_email_field_name()]
    for name, value in profile.items():
        if hasattr(user, name):
            setattr(user, name, value)
            fields.append(name)
    setattr(user, user_model.get_email_field_name(), email)
    username_field = user_model.USERNAME_FIELD
    old_username = getattr(user, username_field)
    if username_field not in fields and old_username == identity.email:
        # The username was derived from the address (auth.User): it follows.
        setattr(user, username_field, _username_for(email))
        fields.append(username_field)
    identity.email = email
    identity.email_normalized = normalize_email(email)
    identity.created_at = timezone.now()
    identity.registrations = F("registrations") + 1
    try:
        _save_registration(user, fields, identity)
    except IntegrityError:
        # A user made outside the package holds that username: keep the old one.
        setattr(user, username_field, old_username)
        _save_registration(user, fields, identity)


def _save_registration(
    user: AbstractBaseUser, fields: list[str], identity: EmailIdentity
) -> None:
    with transaction.atomic():
        user.save(update_fields=fields)
        identity.save(
            update_fields=["email", "email_normalized", "created_at", "registrations"]
        )


@sensitive_variables()
def spend_like_a_new_account(password: str) -> None:
    """Do the work of creating an account, then roll it back.

    A registration for a taken address must cost what a new one does: one
    password hash and the same statements, savepoint included (rule 5 of the
    threat model, asserted by counting queries). ``bulk_create`` sends no
    ``post_save``, so host receivers never see the throwaway rows. Call it inside
    the caller's ``transaction.atomic()`` block.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise TransactionManagementError(
            "spend_like_a_new_account() must run inside transaction.atomic()"
        )
    user_model = get_user_model()
    placeholder = f"{uuid.uuid4().hex}@invalid.invalid"
    fields: dict[str, Any] = {user_model.get_email_field_name(): placeholder}
    if user_model.get_email_field_name() != user_model.USERNAME_FIELD:
        fields[user_model.USERNAME_FIELD] = _generated_username()
    user = user_model(is_active=False, **fields)
    user.set_password(password)
    # A savepoint by hand, not atomic(): atomic() would roll back to it and then
    # release it, one statement more than a new account's SAVEPOINT ... RELEASE.
    # Rolled back and left for the transaction's end, it costs the same.
    savepoint = _savepoint_create()
    try:
        user_model._default_manager.bulk_create([user])
        EmailIdentity.objects.bulk_create(
            [EmailIdentity(user=user, email=placeholder, email_normalized=placeholder)]
        )
    except IntegrityError:
        pass
    finally:
        # A failed bulk_create marks the whole transaction for rollback; rolling
        # back to the savepoint undoes the failure, so the mark goes first, as
        # atomic() does it.
        transaction.set_rollback(False)
        try:
            transaction.savepoint_rollback(savepoint)
        except DatabaseError:
            transaction.set_rollback(True)
            raise
