"""The normal form of an address (DESIGN: Accounts and email identity).

One key for every spelling mail servers deliver to one mailbox; a refusal for
every spelling that would claim a key while mail to it goes elsewhere.
"""

from __future__ import annotations

import pytest

from kinwise_auth.normalization import (
    EmailRefused,
    email_key_or_none,
    normalize,
    normalize_email,
)


@pytest.mark.parametrize(
    ("given", "key", "stored"),
    [
        ("Alice@Example.COM", "alice@example.com", "Alice@Example.COM"),
        ("  bob@example.com\t", "bob@example.com", "bob@example.com"),
        # Quotes that are not needed are dropped: "dana"@x is dana@x.
        ('"dana"@example.com', "dana@example.com", "dana@example.com"),
        (
            '"Dana.Scully"@example.com',
            "dana.scully@example.com",
            "Dana.Scully@example.com",
        ),
        # UTS #46: a Unicode domain and its A-label are one domain.
        ("cm@ex\u00e4mple.com", "cm@xn--exmple-cua.com", "cm@ex\u00e4mple.com"),
        ("cm@xn--exmple-cua.com", "cm@xn--exmple-cua.com", "cm@xn--exmple-cua.com"),
        ("cm@EX\u00c4MPLE.com", "cm@xn--exmple-cua.com", "cm@ex\u00e4mple.com"),
        # A full-width domain maps to plain letters.
        ("a@\uff45xample.com", "a@example.com", "a@example.com"),
        # Django's mailer encodes domains with IDNA 2003 (ß -> ss, another
        # domain): such a domain is stored as its A-label, where mail goes.
        ("a@stra\u00dfe.de", "a@xn--strae-oqa.de", "a@xn--strae-oqa.de"),
        # Non-ASCII letters that fold to non-ASCII letters are fine.
        ("Zo\u00eb@example.com", "zo\u00eb@example.com", "Zo\u00eb@example.com"),
        ("\u0131an@example.com", "\u0131an@example.com", "\u0131an@example.com"),
        # An ASCII hostname is only lower-cased: IDNA 2008 label rules do not
        # apply to it (hyphens in the third and fourth places are delivered to).
        ("a@ab--cd.example.com", "a@ab--cd.example.com", "a@ab--cd.example.com"),
    ],
)
def test_normal_form_and_stored_spelling(given: str, key: str, stored: str) -> None:
    normalized = normalize(given)

    assert (normalized.key, normalized.address) == (key, stored)
    # The stored spelling always normalises to the same key.
    assert normalize_email(normalized.address) == key


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("\u212aim@example.com", "compatibility"),  # KELVIN SIGN
        ("\uff41@example.com", "compatibility"),  # FULLWIDTH a
        ("\ufb01le@example.com", "compatibility"),  # LIGATURE fi
        ("\u017fam.kirk@example.com", "compatibility"),  # LONG S (NFKC: s)
        ("stra\u00dfe@example.com", "case_fold"),  # ß -> ss
        ("\u0130an@example.com", "case_fold"),  # İ -> i + dot
        ("jos\u0065\u0301@example.com", "compatibility"),  # decomposed é
        ("cm@exa\u00admple.com", "invisible"),  # SOFT HYPHEN
        ("cm@exa\u200bmple.com", "invisible"),  # ZERO WIDTH SPACE
        ("c\u200dm@example.com", "invisible"),  # ZERO WIDTH JOINER
        ("cm@example.com\u2060", "invisible"),  # WORD JOINER
        ("\ufeffcm@example.com", "invisible"),  # BOM
        ("cm\ufe0f@example.com", "invisible"),  # VARIATION SELECTOR-16
        ("cm\U000e0041@example.com", "invisible"),  # TAG LATIN CAPITAL A
        ('"da na"@example.com', "quoted_local"),
        ('"a@b"@example.com', "quoted_local"),
        ("a@[127.0.0.1]", "invalid_domain"),
        ("a@-\u00e4.com", "invalid_domain"),  # a label may not start with "-"
        ("no-at-sign", "invalid"),
    ],
)
def test_unsafe_spellings_are_refused(given: str, code: str) -> None:
    with pytest.raises(EmailRefused) as refused:
        normalize(given)

    assert refused.value.code == code
    assert email_key_or_none(given) is None


def test_ascii_lookalikes_of_the_issue_get_different_keys_or_none() -> None:
    # The reproduced squats: each either has no key or not the victim's.
    victim = normalize_email("sam.kirk@example.com")
    for squat in ("\u017fam.kirk@example.com", "sam.\u212airk@example.com"):
        assert email_key_or_none(squat) in (None,)
    assert email_key_or_none("SAM.KIRK@EXAMPLE.COM") == victim


def test_dotless_i_stays_distinct() -> None:
    # U+0131 has no NFKC or casefold mapping to "i": a different mailbox.
    assert normalize_email("\u0131an@example.com") != "ian@example.com"
