"""Caller numbers to E.164, for ANIs from Genesys and phone columns from CRM exports.

Genesys hands over ``Call.Ani`` as a URI (``tel:+13175550116``, ``tel: +1 317-555-0116``,
``sip:+13175550116@carrier.example``) or plain digits. The parsing itself is Google's
libphonenumber (``phonenumbers``); this module only peels the URI wrapping off first.
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumber

__all__ = ["WITHHELD", "normalize_number"]

# What carriers and SIP trunks put in place of a withheld number.
WITHHELD = frozenset(
    {
        "anonymous",
        "restricted",
        "private",
        "withheld",
        "unknown",
        "unavailable",
        "blocked",
        "not_set",
        "notset",
        "none",
        "null",
    }
)


def _strip_uri(raw: str) -> str:
    text = raw.strip()
    scheme, sep, rest = text.partition(":")
    if sep and scheme.strip().lower() in {"tel", "sip", "sips"}:
        text = rest.strip()
        if scheme.strip().lower() != "tel":
            # sip:user@host: the number is the user part.
            text = text.split("@", 1)[0]
    # RFC 3966 parameters (;ext=, ;phone-context=, ;user=phone) are not part of the number.
    return text.split(";", 1)[0].strip()


# A number already in E.164: '+', a country code that does not start with 0, at most 15
# digits in all, and at least 7 (no country's numbers are shorter).
# ASCII digits only: ``\d`` would also match other scripts' digits, which the full parse
# rewrites to ASCII.
_E164 = re.compile(r"\+([1-9][0-9]{6,14})", re.ASCII)


@cache
def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """The country's pattern for a national prefix (the trunk '0', or '1' in NANP), which
    phonenumbers strips from a national number that starts with it; None when it has none."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    pattern = None if metadata is None else metadata.national_prefix_for_parsing
    return re.compile(pattern) if pattern else None


def _already_e164(text: str) -> bool:
    """True when phonenumbers would return ``text`` itself, decided without a full parse.

    A full parse costs about 20 µs of a cached dip's CPU, and nearly every ANI arrives in
    E.164 already. This takes the same steps phonenumbers takes for such a number, through
    its own data: the country code is the shortest leading 1-3 digits it knows; the rest is
    the national number, used unchanged when it has no leading zero and the country's
    national prefix pattern does not match its start (phonenumbers would strip or rewrite
    it); it is then the number phonenumbers builds, and its own is_possible_number judges
    it. Anything else returns False and takes the full parse, so this only ever answers
    what the full parse would (tests/dip/test_phone.py compares the two)."""
    found = _E164.fullmatch(text)
    if found is None:
        return False
    digits = found[1]
    for size in (1, 2, 3):
        country_code = int(digits[:size])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return False
    national = digits[size:]
    if national.startswith("0"):
        return False
    prefix = _national_prefix(country_code)
    if prefix is not None and prefix.match(national) is not None:
        return False
    number = PhoneNumber(country_code=country_code, national_number=int(national))
    return bool(phonenumbers.is_possible_number(number))


def normalize_number(raw: str | None, region: str) -> str | None:
    """E.164 for a caller number, or None when it is withheld, empty or not a number."""
    if raw is None:
        return None
    text = _strip_uri(raw)
    if not text or text.lower() in WITHHELD:
        return None
    if _already_e164(text):
        return text
    if text.startswith("00"):
        text = "+" + text[2:]
    return _parse(text, region)


def _parse(text: str, region: str) -> str | None:
    """The full parse of an unwrapped number, by phonenumbers."""
    candidates = [text]
    if not text.startswith("+"):
        # A '+' sent unescaped in a URL arrives as a space and is stripped above, so an
        # international number can reach us without its '+'. Try the national reading first.
        candidates.append("+" + text)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return None
