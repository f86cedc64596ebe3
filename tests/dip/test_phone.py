"""Caller numbers in every shape Genesys sends become E.164, or None."""

from __future__ import annotations

import random

import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from shared.dip.phone import _already_e164, _parse, normalize_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tel:+13175550116", "+13175550116"),
        ("tel: +1 317-555-0116", "+13175550116"),
        ("TEL:+13175550116", "+13175550116"),
        ("sip:+13175550116@carrier.example", "+13175550116"),
        ("sips:+447700900123@byoc.example;user=phone", "+447700900123"),
        ("sip:+13175550116@carrier.example:5060;transport=udp", "+13175550116"),
        ("+13175550116", "+13175550116"),
        ("tel:+13175550116;ext=42", "+13175550116"),
        ("3175550116", "+13175550116"),
        ("(317) 555-0116", "+13175550116"),
        ("13175550116", "+13175550116"),
        (" 447700900123", "+447700900123"),  # '+' lost to URL decoding
        ("0044 7700 900123", "+447700900123"),
    ],
)
def test_ani_formats_normalise_to_e164(raw: str, expected: str) -> None:
    assert normalize_number(raw, "US") == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "sip:anonymous@anonymous.invalid",
        "tel:restricted",
        "unknown",
        "abc",
        "12345",
        "+1",
        "tel:",
    ],
)
def test_withheld_or_unparseable_ani_names_nobody(raw: str | None) -> None:
    assert normalize_number(raw, "US") is None


def test_national_numbers_read_in_the_default_region() -> None:
    assert normalize_number("020 7946 0018", "GB") == "+442079460018"
    assert normalize_number("020 7946 0018", "US") is None


def in_digits(zero: int, ascii_digits: str) -> str:
    """``ascii_digits`` written in another script's decimal digits (``zero`` its 0)."""
    return "".join(chr(zero + int(d)) for d in ascii_digits)


def e164_cases(per_length: int = 12) -> list[str]:
    """Numbers in E.164 form for every country code phonenumbers knows, of every length the
    form allows, each national part starting with every digit in turn (trunk prefixes,
    NANP's '1', leading zeros), with random digits after it."""
    rng = random.Random(19)
    cases = []
    for country_code in sorted(COUNTRY_CODE_TO_REGION_CODE):
        cc = str(country_code)
        for length in range(1, 16 - len(cc)):
            for n in range(per_length):
                first = str(n % 10)
                rest = "".join(rng.choice("0123456789") for _ in range(length - 1))
                cases.append(f"+{cc}{first}{rest}"[: 1 + len(cc) + length])
    return cases


@pytest.mark.parametrize("region", ["US", "GB"])
def test_the_e164_fast_path_answers_only_what_the_full_parse_answers(region: str) -> None:
    cases = e164_cases()
    fast = [c for c in cases if _already_e164(c)]
    wrong = [c for c in fast if _parse(c, region) != c]
    assert wrong == []
    # And it pays: most numbers the full parse returns unchanged take the fast path.
    unchanged = [c for c in cases if _parse(c, region) == c]
    assert len(fast) >= 0.6 * len(unchanged), (len(fast), len(unchanged))


@pytest.mark.parametrize(
    "number",
    ["+13175550116", "+447911123456", "+4930123456", "+61412345678", "+33612345678"],
)
def test_common_e164_numbers_take_the_fast_path(number: str) -> None:
    assert _already_e164(number)
    assert normalize_number(number, "US") == number


@pytest.mark.parametrize(
    "number",
    [
        "+11234567890",  # NANP's national prefix '1' where an area code belongs
        "+4402079460000",  # a trunk '0' written after the country code
        "+390612345678",  # Italy keeps its leading zero
        "+1317555011",  # too short for NANP
        "+999123456789",  # no such country code
        "+1 317 555 0116",  # not in E.164 form
        "+1" + in_digits(0x0660, "3175550116"),  # Arabic-Indic digits
        "+1" + in_digits(0x06F0, "3175550116"),  # Extended Arabic-Indic digits
    ],
)
def test_numbers_the_fast_path_cannot_vouch_for_take_the_full_parse(number: str) -> None:
    assert not _already_e164(number)
    assert normalize_number(number, "US") == _parse(number, "US")
