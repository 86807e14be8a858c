"""Second factors: a TOTP app (:mod:`.totp`) and recovery codes
(:mod:`.recovery_codes`). Each module owns its rows; the enrolment and sign-in
flows call them."""

from __future__ import annotations
