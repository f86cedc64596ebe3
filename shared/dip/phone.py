"""Caller numbers to E.164, for ANIs from Genesys and phone columns from CRM exports.

Genesys hands over ``Call.Ani`` as a URI (``tel:+13175550116``, ``tel: +1 317-555-0116``,
``sip:+13175550116@carrier.example``) or plain digits. The parsing itself is Google's
libphonenumber (``phonenumbers``); this module only peels the URI wrapping off first.
"""

from __future__ import annotations

import phonenumbers

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


def normalize_number(raw: str | None, region: str) -> str | None:
    """E.164 for a caller number, or None when it is withheld, empty or not a number."""
    if raw is None:
        return None
    text = _strip_uri(raw)
    if not text or text.lower() in WITHHELD:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
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
