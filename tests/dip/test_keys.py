"""Keyed hashes of lookup keys: what the stores hold instead of numbers and ids."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shared.dip.keys import LOCAL_SECRET, MIN_SECRET_CHARS, LookupKey, LookupKeys, parse_secret

SECRET = b"a" * 32
OTHER = b"b" * 32


def test_a_key_is_the_truncated_hmac_sha256_of_its_kind_and_value() -> None:
    expected = hmac.new(SECRET, b"p|+13175550116", hashlib.sha256).digest()[:16]
    key = LookupKeys(SECRET).key("ani", "+13175550116")
    assert key.kind == "ani"
    assert base64.urlsafe_b64decode(key.digest + "==") == expected
    assert key.cache_key == "p|" + key.digest
    assert len(key.digest) == 22


def test_a_key_names_neither_the_number_nor_its_digits() -> None:
    key = LookupKeys(SECRET).key("ani", "+13175550116")
    assert "13175550116" not in key.cache_key and "5550116" not in key.cache_key


def test_the_kind_is_part_of_the_hash() -> None:
    keys = LookupKeys(SECRET)
    # A customer id that looks like a number is not the number's key.
    assert keys.key("customerId", "+13175550116").digest != keys.key("ani", "+13175550116").digest


def test_another_secret_gives_another_key() -> None:
    value = "+13175550116"
    assert LookupKeys(SECRET).key("ani", value) != LookupKeys(OTHER).key("ani", value)


def test_a_dip_tries_the_current_secret_then_the_previous_one() -> None:
    rotating = LookupKeys(OTHER, previous=SECRET)
    assert rotating.rotating
    assert rotating.candidates("ani", "+13175550116") == (
        LookupKeys(OTHER).key("ani", "+13175550116"),
        LookupKeys(SECRET).key("ani", "+13175550116"),
    )
    assert rotating.previous_key("ani", "+1") == LookupKeys(SECRET).key("ani", "+1")


def test_without_a_previous_secret_there_is_one_candidate() -> None:
    keys = LookupKeys(SECRET)
    assert not keys.rotating
    assert keys.candidates("customerId", "C-1") == (keys.key("customerId", "C-1"),)
    assert keys.previous_key("customerId", "C-1") is None
    # A previous secret equal to the current one is no rotation.
    assert not LookupKeys(SECRET, previous=SECRET).rotating


def test_a_stored_key_reads_back_as_its_kind_and_digest() -> None:
    key = LookupKeys(SECRET).key("customerId", "C-1")
    assert LookupKey.from_stored(key.cache_key) == key


@pytest.mark.parametrize(
    "stored",
    ["p|+13175550116", "c|C-1", "x|" + "A" * 22, "p|" + "A" * 21, "p|" + "A" * 23, "p|" + "%" * 22],
)
def test_a_stored_key_that_is_not_a_keyed_hash_reads_as_none(stored: str) -> None:
    assert LookupKey.from_stored(stored) is None


def test_a_secret_of_enough_characters_is_its_bytes() -> None:
    assert parse_secret("  " + "k" * MIN_SECRET_CHARS + " ") == b"k" * MIN_SECRET_CHARS
    assert parse_secret(LOCAL_SECRET) == LOCAL_SECRET.encode()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "at least 32 characters"),
        ("s3cr3t-but-short", "at least 32 characters"),
        (
            "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/lookup-key/)",
            "Key Vault reference",
        ),
        ("@microsoft.keyvault(VaultName=kv;SecretName=lookup-key)", "Key Vault reference"),
    ],
)
def test_a_bad_secret_says_why_without_quoting_it(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        parse_secret(raw)
    if raw:
        assert raw not in str(caught.value)
        assert "short" not in str(caught.value)
