"""A JSON parser that refuses bodies over ``MAX_BODY_SIZE`` before parsing them,
and bodies nested deeper than Python can parse, as the malformed input they are."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .conf import auth_settings
from .errors import RequestTooLarge

__all__ = ["BoundedJSONParser"]


class BoundedJSONParser(JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        max_size = int(auth_settings.MAX_BODY_SIZE)
        # Read one byte past the cap: a body that lies about its length is caught too.
        body = stream.read(max_size + 1)
        if len(body) > max_size:
            raise RequestTooLarge()
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            # 3 KB of "[[[[..." is a RecursionError in json, not a ValueError.
            raise ParseError(
                _("JSON parse error - the body is nested too deeply.")
            ) from None
