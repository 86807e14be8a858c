"""Looking up and creating accounts by email identity."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, transaction
from django.db.transaction import TransactionManagementError
from django.views.decorators.debug import sensitive_variables

from ..models import EmailIdentity
from ..normalization import normalize_email

__all__ = ["find_identity", "create_pending_user", "spend_like_a_new_account"]


def _savepoint_create() -> Any:
    """``transaction.savepoint_create()`` (Django 6.1; ``savepoint()`` before)."""
    create = getattr(transaction, "savepoint_create", None)
    return create() if create is not None else transaction.savepoint()


def find_identity(email: str, *, for_update: bool = False) -> EmailIdentity | None:
    """The identity holding ``email`` (compared by its normal form), with its user."""
    queryset = EmailIdentity.objects.select_related("user")
    if for_update:
        queryset = queryset.select_for_update()
    return queryset.filter(email_normalized=normalize_email(email)).first()


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
