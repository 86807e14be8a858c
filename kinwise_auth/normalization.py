"""The normal form under which two email addresses are one mailbox.

An identity key must map every spelling that mail servers deliver to one mailbox
onto one key, and must never let a spelling delivered elsewhere claim someone's
key (the pattern behind CVE-2019-19844). So:

* the domain is IDNA-mapped (UTS #46, the ``idna`` package): ``exämple.com`` and
  ``xn--exmple-cua.com`` are one domain, and the key holds its ASCII form;
* invisible code points (soft hyphen, zero-width characters, word joiner, BOM:
  Unicode's default-ignorables and every format or unassigned character) are
  refused, not stripped: stripped, they would let two spellings share a key;
* a quoted local part is unquoted when the quotes are not needed
  (``"dana"@x`` is ``dana@x``) and refused otherwise;
* the local part is case-folded, but refused when NFKC changes it (Kelvin sign,
  full-width letters, ligatures) or when case folding turns a non-ASCII
  character into ASCII (``ſam`` → ``sam``, ``ß`` → ``ss``): no mail server
  delivers those to the mailbox whose key they would claim.

:func:`normalize` returns both the key and the spelling to store and mail to,
which always normalises to the same key.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import idna
from django.utils.encoding import punycode
from django.utils.translation import gettext_lazy as _

__all__ = [
    "EmailRefused",
    "NormalizedEmail",
    "normalize",
    "normalize_email",
    "email_key_or_none",
    "Rekeying",
    "plan_rekeying",
]

MAX_LENGTH = 254

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt); format (Cf),
# private-use, surrogate and unassigned characters are refused beside them.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn"}

# RFC 5322 dot-atom text, extended to non-ASCII letters by RFC 6532: what a
# local part may be without quotes.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*\Z")
_QUOTED_PAIR = re.compile(r"\\(.)")


class EmailRefused(ValueError):
    """An address with no safe normal form; ``message`` is for the person typing."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class NormalizedEmail:
    """``address`` is the spelling to store and mail to; ``key`` its identity key."""

    address: str
    key: str


def _is_invisible(char: str) -> bool:
    point = ord(char)
    if any(low <= point <= high for low, high in _DEFAULT_IGNORABLE):
        return True
    return unicodedata.category(char) in _REFUSED_CATEGORIES


def _unquote(local: str) -> str:
    if not (len(local) >= 2 and local.startswith('"') and local.endswith('"')):
        return local
    inner = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    if not _DOT_ATOM.match(inner):
        raise EmailRefused(
            str(_("Addresses that need quotes are not supported.")), "quoted_local"
        )
    return inner


def _local_key(local: str) -> str:
    if unicodedata.normalize("NFKC", local) != local:
        raise EmailRefused(
            str(_("This address contains look-alike characters.")), "compatibility"
        )
    for char in local:
        if not char.isascii() and any(c.isascii() for c in char.casefold()):
            # ſ → s, ß → ss, K (Kelvin) → k: the ASCII mailbox is someone else's.
            raise EmailRefused(
                str(_("This address contains look-alike characters.")), "case_fold"
            )
    return local.casefold()


def _domain_key(domain: str) -> str:
    key = _mapped_domain(domain)
    if key.endswith("."):
        # "x.com." is "x.com" to DNS: one mailbox, two keys. The ideographic full
        # stop (U+3002) and its kin map to a dot, so it is checked after mapping.
        raise EmailRefused(str(_("Enter a valid email domain.")), "invalid_domain")
    return key


def _mapped_domain(domain: str) -> str:
    if domain.startswith("["):
        raise EmailRefused(str(_("Enter a valid email domain.")), "invalid_domain")
    if domain.isascii():
        # Already the ASCII form UTS #46 maps to, but for case: IDNA 2008's label
        # rules would refuse hostnames mail is delivered to (``ab--cd.com``).
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        pass
    try:
        too_long = len(idna.uts46_remap(domain, transitional=False)) > MAX_LENGTH
    except (idna.IDNAError, UnicodeError):
        too_long = False
    if too_long:  # a ligature maps to several letters: 3 × 84 > 253
        raise EmailRefused(str(_("This address is too long.")), "too_long")
    raise EmailRefused(str(_("Enter a valid email domain.")), "invalid_domain")


def _domain_spelling(domain: str, key: str) -> str:
    """The domain as typed when it is plain ASCII; otherwise its Unicode form,
    unless Django's mailer (IDNA 2003) would encode that elsewhere (``ß``)."""
    if domain.isascii():
        return domain
    unicode_form = idna.decode(key)
    try:
        delivered = punycode(unicode_form).lower()
    except UnicodeError:
        return key
    return unicode_form if delivered == key else key


def normalize(email: str) -> NormalizedEmail:
    """The identity key of ``email`` and the spelling to store and mail to.

    Raises :class:`EmailRefused` for an address that has no safe normal form.
    Surrounding whitespace is dropped.
    """
    email = email.strip()
    if any(_is_invisible(char) for char in email):
        raise EmailRefused(
            str(_("This address contains invisible characters.")), "invisible"
        )
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise EmailRefused(str(_("Enter a valid email address.")), "invalid")
    local = _unquote(local)
    domain_key = _domain_key(domain)
    key = f"{_local_key(local)}@{domain_key}"
    address = f"{local}@{_domain_spelling(domain, domain_key)}"
    if len(key) > MAX_LENGTH or len(address) > MAX_LENGTH:
        raise EmailRefused(str(_("This address is too long.")), "too_long")
    return NormalizedEmail(address=address, key=key)


def normalize_email(email: str) -> str:
    """The identity key of ``email``; raises :class:`EmailRefused`."""
    return normalize(email).key


def email_key_or_none(email: str) -> str | None:
    """The identity key of ``email``, or None when it has none (it then matches
    no account: lookups by such an address find nothing)."""
    try:
        return normalize(email).key
    except EmailRefused:
        return None


@dataclass
class Rekeying:
    """What the current normal form changes for stored identities.

    ``changes``: identity pk -> its new key, safe to write (no other row takes
    it). ``refused``: (pk, address, reason) of rows whose address has no normal
    form any more. ``merges``: new key -> the pks of rows it would merge; neither
    is changed, for a person to decide which account the mailbox belongs to.
    """

    changes: dict[int, str] = field(default_factory=dict)
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    merges: dict[str, list[int]] = field(default_factory=dict)


def plan_rekeying(rows: Iterable[tuple[int, str, str]]) -> Rekeying:
    """Plan the re-keying of identities given as ``(pk, address, stored key)``."""
    plan = Rekeying()
    holders: dict[str, list[int]] = defaultdict(list)
    stored: dict[int, str] = {}
    for pk, address, key in rows:
        stored[pk] = key
        try:
            holders[normalize(address).key].append(pk)
        except EmailRefused as exc:
            plan.refused.append((pk, address, exc.message))
            holders[key].append(pk)  # it keeps its key, which no one may take
    for key, pks in holders.items():
        if len(pks) > 1:
            plan.merges[key] = sorted(pks)
        elif stored[pks[0]] != key:
            plan.changes[pks[0]] = key
    return plan
