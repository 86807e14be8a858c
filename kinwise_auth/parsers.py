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

__all__ = ["BoundedJSONParser", "MAX_DEPTH"]

# Every body the API takes is a flat object; this leaves room and bounds the work.
MAX_DEPTH = 32


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
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            # 3 KB of "[[[[..." is a RecursionError in json, not a ValueError.
            data = None
        else:
            if not _nested_deeper_than(data, MAX_DEPTH):
                return data
        # Python 3.13 parses 1 500 levels that 3.11 and 3.12 cannot: one answer
        # for every version, and no deep structure handed to the serializers.
        raise ParseError(_("JSON parse error - the body is nested too deeply."))


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists or objects more than ``limit`` deep (iterative:
    a recursive walk would fail where the parser did)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False
