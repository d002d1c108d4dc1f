"""PII in SQL: masking, keyed hashing and detection of e-mail addresses, phone numbers, IP
addresses and card-like numbers in free text, as DuckDB expressions (vectorised per batch).

Hashing is keyed with ``LAKE_PII_SALT``: ``sha256(salt || sha256(salt || value))`` as hex, so
the same value hashes the same in every dataset of a deployment (joins on hashed keys work)
and nobody without the salt can recompute a hash from a guessed value.
"""

from __future__ import annotations

from lakehouse.errors import PiiSaltMissing

# RE2 patterns (DuckDB's regex engine), tried in this order when masking free text.
DETECTORS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "card": r"\b(?:\d[ -]?){12,18}\d\b",
    "ip": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "phone": r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b",
}


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mask_expr(col: str) -> str:
    """Every character but the last four of values longer than eight replaced by ``*``."""
    return (
        f"CASE WHEN length({col}) > 8 THEN repeat('*', length({col}) - 4) || right({col}, 4) "
        f"ELSE repeat('*', length({col})) END"
    )


def hash_expr(col: str, salt: str | None) -> str:
    """The keyed hash of a value (hex), NULL for NULL."""
    if not salt:
        raise PiiSaltMissing("a contract hashes PII but LAKE_PII_SALT is not set")
    s = _lit(salt)
    return f"sha256({s} || sha256({s} || CAST({col} AS VARCHAR)))"


def flag_expr(col: str, kind: str) -> str:
    """TRUE where the value contains PII of ``kind``, once the kinds before it are cut out (a card
    number is not also counted as a phone number)."""
    text = col
    for earlier, pattern in DETECTORS.items():
        if earlier == kind:
            break
        text = f"regexp_replace({text}, {_lit(pattern)}, ' ', 'g')"
    return f"coalesce(regexp_matches({text}, {_lit(DETECTORS[kind])}), false)"


def redact_expr(col: str) -> str:
    """Free text with each detected value replaced by a ``<kind>`` token."""
    expr = col
    for kind, pattern in DETECTORS.items():
        expr = f"regexp_replace({expr}, {_lit(pattern)}, {_lit('<' + kind + '>')}, 'g')"
    return expr


def column_expr(col: str, mode: str, salt: str | None) -> str:
    """A contract column's stored value under ``pii: mask | hash`` (``drop`` is never stored)."""
    if mode == "mask":
        return mask_expr(col)
    if mode == "hash":
        return hash_expr(col, salt)
    raise ValueError(f"no stored value for pii mode {mode}")


def detected_expr(col: str, flags: list[str], mode: str, salt: str | None) -> str:
    """A free-text column after detection: ``mask`` redacts the matches, ``hash`` replaces a value
    holding PII by its keyed hash, ``drop`` replaces it by NULL."""
    if mode == "mask":
        return redact_expr(col)
    any_flag = " OR ".join(flags)
    if mode == "hash":
        return f"CASE WHEN {any_flag} THEN {hash_expr(col, salt)} ELSE {col} END"
    return f"CASE WHEN {any_flag} THEN NULL ELSE {col} END"
