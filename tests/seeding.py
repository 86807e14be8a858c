"""Seeding tables in SQL (``INSERT ... SELECT generate_series``), for the tests of
index plans and for the benchmarks under ``bench/``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import models


def user_columns(email_sql: str, password_hash: str) -> tuple[list[str], list[str]]:
    """Columns of the user table and SQL expressions filling them for a seeded
    verified account whose address is ``email_sql`` (an SQL expression).

    Read from the model, so it works for ``auth.User`` and a custom user alike.
    """

    model = get_user_model()
    email_fields = {model.get_email_field_name(), model.USERNAME_FIELD}
    columns: list[str] = []
    values: list[str] = []
    for f in model._meta.concrete_fields:
        if f.primary_key:
            continue
        if f.name in email_fields:
            value = email_sql
        elif f.name == "password":
            value = "'" + password_hash.replace("'", "''") + "'"
        elif isinstance(f, models.BooleanField):
            value = "true" if f.name == "is_active" else "false"
        elif f.null:
            value = "NULL"
        elif isinstance(f, models.DateTimeField):
            value = "now()"
        else:
            value = "''"
        columns.append(f.column)
        values.append(value)
    return columns, values
