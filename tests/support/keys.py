"""The lookup keys tests write and read with: the secret local.settings.json gives the app."""

from __future__ import annotations

from shared.dip.keys import LOCAL_SECRET, LookupKeys

SECRET = LOCAL_SECRET
KEYS = LookupKeys(SECRET.encode())
