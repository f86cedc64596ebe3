"""Lookup keys as every store holds them: a keyed hash of the caller's number or id.

A dip maps a phone number to a customer, and that map is personal data. So no store holds
the number or the customer id as a key: Table RowKeys, Redis keys and the read model's
filter all hold ``HMAC-SHA256(secret, "p|<E.164>")`` (``"c|<customerId>"`` for an id),
truncated to its first 128 bits and written in URL-safe base64 (22 characters). Without
the secret, a key cannot be turned back into a number by trying every number, as a plain
SHA-256 of a ten-digit number can.

Truncating an HMAC to half its output is allowed by RFC 2104 (section 5, "at least half
the length of the hash output") and NIST SP 800-107 Rev. 1 (section 5.3.3). 128 bits keep a
collision between two of ten million keys below 1 in 10^22, and save 21 bytes a key
against the full digest in a read model of millions of keys.

Every writer and reader (the loader, the warm, the read model, a dip's write-through and
the lookup) gets its keys from one ``LookupKeys``. It may hold a previous secret as well,
while a rotation (docs/privacy.md) reloads the table under the new one: a dip then tries
the current secret first and the previous one after it.

The hash is written by hand over the standard library's ``hmac``: no maintained library
wraps "HMAC, truncate, base64url", and this is the whole of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LOCAL_SECRET",
    "MIN_SECRET_CHARS",
    "KeyKind",
    "LookupKey",
    "LookupKeys",
    "parse_secret",
]

KeyKind = Literal["customerId", "ani"]
_PREFIX: dict[KeyKind, str] = {"customerId": "c|", "ani": "p|"}
_DIGEST_BYTES = 16
# What a digest looks like: 16 bytes in URL-safe base64, unpadded.
_DIGEST = re.compile(r"[A-Za-z0-9_-]{22}")

# The shortest secret accepted: `openssl rand -base64 32` writes 44 characters.
MIN_SECRET_CHARS = 32
# The secret local.settings.json carries for Azurite and a local Redis. It is published,
# so an app running in Azure refuses it (shared/dip/settings.py).
LOCAL_SECRET = "local-only-lookup-key-secret-never-used-in-azure"
_KEY_VAULT_REFERENCE = "@microsoft.keyvault("


def parse_secret(raw: str) -> bytes:
    """The bytes of a LOOKUP_KEY_SECRET value, or ValueError saying what is wrong with it.

    The message never quotes the value: it is a secret.
    """
    value = raw.strip()
    if value.lower().startswith(_KEY_VAULT_REFERENCE):
        # App Service puts the reference text itself in the setting when it cannot resolve
        # it (the identity may not read the secret yet, or the secret does not exist).
        raise ValueError(
            "is a Key Vault reference App Service has not resolved: check the app's access "
            "to the vault (docs/deploy.md, Key Vault references)"
        )
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(
            f"expected at least {MIN_SECRET_CHARS} characters (`openssl rand -base64 32` makes one)"
        )
    return value.encode()


@dataclass(frozen=True, slots=True)
class LookupKey:
    """A lookup key as the stores hold it: its kind and the keyed hash of its value.

    The value itself (the number, the id) is never part of it.
    """

    kind: KeyKind
    digest: str

    @property
    def cache_key(self) -> str:
        """The key's name in Redis (after the answer prefix) and its Table RowKey."""
        return _PREFIX[self.kind] + self.digest

    @classmethod
    def from_stored(cls, stored: str) -> LookupKey | None:
        """The key a RowKey or cache key names; None for anything else, such as a row whose
        key is a plain number or id (a table loaded before keys were hashed)."""
        for kind, prefix in _PREFIX.items():
            if stored.startswith(prefix) and _DIGEST.fullmatch(stored, len(prefix)):
                return cls(kind, stored[len(prefix) :])
        return None


class LookupKeys:
    """Turns a number or a customer id into the keys the stores hold, under the current
    secret and, during a rotation, the previous one."""

    def __init__(self, secret: bytes, previous: bytes | None = None) -> None:
        if previous == secret:
            previous = None
        self._current = hmac.new(secret, digestmod=hashlib.sha256)
        self._previous = None if previous is None else hmac.new(previous, digestmod=hashlib.sha256)

    @property
    def rotating(self) -> bool:
        """True while a previous secret is also tried."""
        return self._previous is not None

    @property
    def secret_count(self) -> int:
        """How many secrets keys are tried under: 2 during a rotation, else 1."""
        return 2 if self.rotating else 1

    @staticmethod
    def _digest(base: hmac.HMAC, kind: KeyKind, value: str) -> LookupKey:
        # Copying a keyed HMAC object skips hashing the padded key again for every value.
        mac = base.copy()
        mac.update((_PREFIX[kind] + value).encode())
        token = base64.urlsafe_b64encode(mac.digest()[:_DIGEST_BYTES]).rstrip(b"=")
        return LookupKey(kind, token.decode("ascii"))

    def key(self, kind: KeyKind, value: str) -> LookupKey:
        """The key under the current secret: what the loader and the warm write."""
        return self._digest(self._current, kind, value)

    def candidates(self, kind: KeyKind, value: str) -> tuple[LookupKey, ...]:
        """The keys a dip tries, in order: the current secret's, then the previous one's."""
        current = self._digest(self._current, kind, value)
        if self._previous is None:
            return (current,)
        return current, self._digest(self._previous, kind, value)

    def previous_key(self, kind: KeyKind, value: str) -> LookupKey | None:
        """The key under the previous secret, None when no rotation is under way."""
        return None if self._previous is None else self._digest(self._previous, kind, value)
