"""The schema reads the hooks when it is generated, not when the app is imported."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

pytestmark = pytest.mark.openapi


class ShortUser(serializers.Serializer[Any]):
    id = serializers.IntegerField()


def generate() -> dict[str, Any]:
    schema: dict[str, Any] = SchemaGenerator(urlconf="kinwise_auth.urls").get_schema(
        request=None, public=True
    )
    return schema


def test_a_user_serializer_set_after_import_shapes_the_answers(settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"
    }
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "USER_SERIALIZER": f"{__name__}.ShortUser",
    }

    components = generate()["components"]["schemas"]

    assert components["SignIn"]["properties"]["user"] == {
        "$ref": "#/components/schemas/ShortUser"
    }
    assert set(components["ShortUser"]["properties"]) == {"id"}
