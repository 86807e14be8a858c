"""The normal form under which two email addresses are the same mailbox."""

from __future__ import annotations

import unicodedata

__all__ = ["normalize_email"]


def normalize_email(email: str) -> str:
    """NFKC, then ``casefold()``, trimmed.

    ``A@x.com``, ``a@X.COM`` and look-alikes such as the Kelvin sign (U+212A) or
    the long s (U+017F) fold to one form, so they cannot hold two accounts
    (the pattern behind CVE-2019-19844).
    """
    return unicodedata.normalize("NFKC", email).casefold().strip()
