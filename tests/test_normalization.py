from __future__ import annotations

import pytest

from kinwise_auth.normalization import normalize_email


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob@example.com\t", "bob@example.com"),
        ("\u212aelvin@example.com", "kelvin@example.com"),  # KELVIN SIGN
        ("\u017fam@example.com", "sam@example.com"),  # LATIN SMALL LETTER LONG S
        ("\uff41@example.com", "a@example.com"),  # FULLWIDTH a
        ("stra\u00dfe@example.com", "strasse@example.com"),
    ],
)
def test_normal_form(given: str, expected: str) -> None:
    assert normalize_email(given) == expected


def test_dotless_i_stays_distinct() -> None:
    # U+0131 has no NFKC or casefold mapping to "i": a different mailbox.
    assert normalize_email("\u0131an@example.com") != "ian@example.com"
