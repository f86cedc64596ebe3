"""Caller numbers in every shape Genesys sends become E.164, or None."""

from __future__ import annotations

import pytest

from shared.dip.phone import normalize_number


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
