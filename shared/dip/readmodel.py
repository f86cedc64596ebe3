"""The warm read model: what a complete bulk warm proves, and how a dip asks.

The warm (``warm.py``) writes every customer's answers into Redis in the dip's own entry
format, so known callers hit the cache through a spike. What it also needs to prove is
absence: that a number nobody has is no customer, without a database read. A Redis miss
alone cannot say that, because Redis evicts entries under memory pressure.

So each warm also builds a Bloom filter of every lookup key it wrote: 256 bitmaps, one per
table partition, with no TTL. A Bloom filter never answers "absent" for a key that was
added, and under a volatile-* eviction policy a key without a TTL is never evicted. So a
miss is answered "no customer" only when

* a marker says a complete warm finished less than READ_MODEL_MAX_AGE_SECONDS ago, and
* the filter of that warm's generation has a 0 in one of the key's bits.

Anything else (no marker, a stale one, a "maybe" from the filter, which is what an evicted
entry gives) goes to the database through the valve, as without a read model. A key the
loader adds after the warm is added to the filter too; one added to the table by anything
else is not, which is why READ_MODEL_AUTHORITATIVE can be turned off.

The filter's bits are set with BITFIELD and read with one BITFIELD of GETs: one round trip,
on a command Redis has had since 3.2.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.clients import RedisClient
from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.cache import Entry, EntryWriter, SingleFlight
from shared.dip.customers import PARTITIONS, CustomerRecord, table_keys
from shared.dip.keys import LookupKey
from shared.dip.metrics import DipMetrics

__all__ = [
    "AGE_REPORT_S",
    "BLOOM_HASHES",
    "CURSOR_KEY",
    "LEASE_KEY",
    "MARKER_KEY",
    "Bloom",
    "Marker",
    "ReadModel",
    "ReadModelWriter",
    "bloom_bits_for",
    "bloom_key",
    "read_marker",
    "server_clock",
    "used_memory",
]

MARKER_KEY = "dipguard:readmodel:marker"
CURSOR_KEY = "dipguard:readmodel:cursor"
LEASE_KEY = "dipguard:readmodel:lease"
_BLOOM_PREFIX = "dipguard:readmodel:bloom:"

# The read model's age is reported (dipguard.readmodel.age) only from a marker read this
# recently; the stale read model alert takes the largest age any worker reports.
AGE_REPORT_S = 15 * 60

# 7 bits per key; at 16 filter bits per key a Bloom filter answers "maybe" for about 0.05%
# of the keys it never saw (each such caller costs one database read, nothing worse).
BLOOM_HASHES = 7
_BITS_PER_KEY = 16
# Sized for at least this many lookup keys, so a first warm of a small table still makes a
# filter that the loader's additions do not crowd: 4 MiB in all.
_MIN_KEYS = 1_000_000


def bloom_bits_for(keys: int) -> int:
    """Bits of each partition's filter, for a model of about ``keys`` lookup keys, with room
    to double: a power of two, so offsets fold cheaply."""
    per_partition = max(keys, _MIN_KEYS) * 2 * _BITS_PER_KEY / PARTITIONS
    return 1 << max(10, math.ceil(math.log2(per_partition)))


def bloom_key(generation: str, partition: str) -> str:
    return f"{_BLOOM_PREFIX}{generation}:{partition}"


def _offsets(cache_key: str, bits: int) -> list[int]:
    # Double hashing (Kirsch and Mitzenmacher): k offsets from two 64-bit halves of one
    # digest, independent of the SHA-256 that picks the partition.
    digest = hashlib.blake2b(cache_key.encode(), digest_size=16).digest()
    h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1
    return [(h1 + i * h2) % bits for i in range(BLOOM_HASHES)]


@dataclass(frozen=True)
class Bloom:
    """One generation's filter: where each key's bits are."""

    generation: str
    bits: int

    def locate(self, key: LookupKey) -> tuple[str, list[int]]:
        partition, _ = table_keys(key)
        return bloom_key(self.generation, partition), _offsets(key.cache_key, self.bits)

    def add_commands(self, keys: Iterable[LookupKey]) -> list[tuple[str, list[Any]]]:
        """One BITFIELD per partition touched, setting every key's bits."""
        ops: dict[str, list[Any]] = {}
        for key in keys:
            name, offsets = self.locate(key)
            args = ops.setdefault(name, [])
            for offset in offsets:
                args += ["SET", "u1", offset, 1]
        return list(ops.items())

    def queue_adds(self, pipe: Any, keys: Iterable[LookupKey]) -> None:
        """Queue the BITFIELDs that add ``keys`` on a pipeline the caller executes."""
        for name, args in self.add_commands(keys):
            pipe.execute_command("BITFIELD", name, *args)


@dataclass(frozen=True)
class Marker:
    """A complete warm: its generation, when it finished (epoch seconds), what it wrote."""

    generation: str
    completed_at: float
    entities: int
    bloom_bits: int

    def age(self, now: float) -> float:
        return max(0.0, now - self.completed_at)

    def to_json(self) -> str:
        return json.dumps(
            {
                "generation": self.generation,
                "completedAt": self.completed_at,
                "entities": self.entities,
                "bloomBits": self.bloom_bits,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Marker | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["generation"]),
                float(data["completedAt"]),
                int(data["entities"]),
                int(data["bloomBits"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def bloom(self) -> Bloom:
        return Bloom(self.generation, self.bloom_bits)


async def read_marker(redis: RedisClient) -> Marker | None:
    raw = await redis.get(MARKER_KEY)
    return None if raw is None else Marker.from_json(raw)


class ReadModel:
    """What a dip asks of the read model, within its deadline, under the Redis breaker."""

    def __init__(
        self,
        redis: RedisClient,
        breaker: Breaker,
        *,
        max_age_s: float,
        authoritative: bool,
        clock: Callable[[], float] = time.time,
        marker_refresh_s: float = 5.0,
        metrics: DipMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.breaker = breaker
        self.max_age_s = max_age_s
        self.authoritative = authoritative
        self._clock = clock
        self._refresh_s = marker_refresh_s
        self._marker: Marker | None = None
        self._marker_read_at = -math.inf
        self._marker_reads: SingleFlight[Marker | None] = SingleFlight()
        if metrics is not None:
            metrics.watch_readmodel_age(self.last_known_age)

    async def marker(self, timeout: float) -> Marker | None:
        """The latest complete warm, read again at most every few seconds per process; the
        dips that need it while it is being read share that one read."""
        now = self._clock()
        if now - self._marker_read_at >= self._refresh_s:
            try:
                self._marker = await self._marker_reads.do(
                    MARKER_KEY,
                    lambda: self.breaker.call(lambda: read_marker(self.redis), timeout),
                    timeout,
                )
            except TimeoutError:
                # A waiter's own wait ran out a moment before the shared read's breaker
                # timer did (which counts the failure): Redis could not say, as for the
                # read itself, and the dip reads the database.
                raise RedisUnavailable("the marker read timed out") from None
            self._marker_read_at = now
        return self._marker

    def last_known_age(self) -> float | None:
        """Seconds since the last complete warm, from the marker this process last read
        (a dip's miss or a health check); None when it has read none, or read it more than
        AGE_REPORT_S ago: a worker that only answers cache hits would otherwise report an
        age that grows past every newer warm it has not looked at. No Redis call: the
        metrics gauge asks from the SDK's collection thread."""
        marker, now = self._marker, self._clock()
        if marker is None or now - self._marker_read_at > AGE_REPORT_S:
            return None
        return marker.age(now)

    def fresh(self, marker: Marker | None) -> bool:
        return marker is not None and marker.age(self._clock()) < self.max_age_s

    def fresh_until(self) -> float | None:
        """Until when a warmed answer is fresh, if a fresh warm is known in this process."""
        marker = self._marker
        if marker is None or not self.fresh(marker):
            return None
        return marker.completed_at + self.max_age_s

    async def absent(self, key: LookupKey, timeout: float) -> bool:
        """True only when a fresh, complete warm proves no customer has this key.

        Raises RedisUnavailable when Redis cannot say; the dip then reads the database.
        """
        if not self.authoritative:
            return False
        marker = await self.marker(timeout)
        if marker is None or not self.fresh(marker):
            return False
        name, offsets = marker.bloom.locate(key)
        args: list[Any] = []
        for offset in offsets:
            args += ["GET", "u1", offset]

        async def probe() -> list[Any]:
            # One round trip. A filter that no longer exists proves nothing: this process
            # may hold the marker of a warm a newer one has replaced (and deleted the
            # filters of) in the last few seconds, or Redis may have lost the key.
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(name)
            pipe.execute_command("BITFIELD", name, *args)
            return list(await pipe.execute())

        exists, bits = await self.breaker.call(probe, timeout)
        if not int(exists):
            return False
        return any(int(bit) == 0 for bit in bits)

    async def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """For health and warmup: the last complete warm's age and size, Redis memory."""
        try:
            marker = await self.breaker.call(lambda: read_marker(self.redis), timeout)
            # What health and warmup read is as current as what a dip reads: keep it.
            self._marker, self._marker_read_at = marker, self._clock()
            memory = await self.breaker.call(lambda: self.redis.info("memory"), timeout)
        except RedisUnavailable as exc:
            return {"readModel": f"unavailable: {exc}"}
        used = used_memory(memory)
        if marker is None:
            return {"readModel": "never warmed", "redisUsedMemoryBytes": used}
        age = marker.age(self._clock())
        return {
            "readModel": "fresh" if age < self.max_age_s else "stale",
            "readModelAgeSeconds": round(age),
            "readModelEntities": marker.entities,
            "redisUsedMemoryBytes": used,
        }


def used_memory(info: Any) -> int | None:
    """used_memory from INFO memory; a cluster client answers per node, so add them up."""
    if isinstance(info, dict) and "used_memory" in info:
        return int(info["used_memory"])
    if isinstance(info, dict):
        nodes = [v for v in info.values() if isinstance(v, dict) and "used_memory" in v]
        if nodes:
            return sum(int(v["used_memory"]) for v in nodes)
    return None


# Keys per pipeline of the loader's write-through: about a warm page's worth.
WRITE_CHUNK = 1000


async def server_clock(redis: RedisClient, base: Callable[[], float]) -> Callable[[], float]:
    """``base`` moved to Redis's clock (TIME), for what runs off the instances.

    Entries are ordered by their time (put_entry.lua keeps the newer) and judged fresh by it,
    and a warm's marker dates the read model. The instances' clocks are synchronised; a
    loader or a warm on an operator's machine may be off by minutes, and would then write
    answers that lose to older ones a dip wrote, or date the read model wrongly.
    """
    reply: Any = await redis.time()
    if isinstance(reply, dict):  # a cluster client asks every node; any one will do
        reply = next(iter(reply.values()))
    seconds, micros = reply
    offset = float(seconds) + float(micros) / 1_000_000 - base()
    return lambda: base() + offset


class ReadModelWriter:
    """Keeps the read model current outside a warm: the loader's write-through.

    ``write`` caches each key's answer, fresh as long as a warm's, and adds the key to the
    Bloom filter of the latest complete warm and of a warm in progress, so the key is not
    taken for absent before the next warm. ``remove`` replaces the answers of keys gone from
    the table with "no customer" for NEGATIVE_TTL_SECONDS: the removed customer's record
    leaves Redis at once, and the entry is newer than any answer a slow reader could still
    write back.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        max_age_s: float,
        stale_ttl_s: float,
        negative_ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.max_age_s = max_age_s
        self.stale_ttl_s = stale_ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._clock = clock
        self._entries = EntryWriter(redis)

    async def follow_server_clock(self) -> None:
        """Stamp entries by Redis's clock from now on, not this machine's (server_clock)."""
        self._clock = await server_clock(self.redis, self._clock)

    async def _blooms(self) -> list[Bloom]:
        blooms: list[Bloom] = []
        # The warm in progress first, then the marker: a warm that completes in between
        # is then found as the marker, never missed by both reads.
        building = await self.redis.hmget(CURSOR_KEY, ["generation", "bloomBits"])
        if building[0] is not None and building[1] is not None:
            generation = building[0].decode() if isinstance(building[0], bytes) else building[0]
            blooms.append(Bloom(str(generation), int(building[1])))
        marker = await read_marker(self.redis)
        if marker is not None and all(b.generation != marker.generation for b in blooms):
            blooms.append(marker.bloom)
        return blooms

    def _entry(self, key: LookupKey, record: CustomerRecord, now: float) -> Entry:
        return Entry(
            key.cache_key, record, now, now + self.max_age_s, self.max_age_s + self.stale_ttl_s
        )

    def _gone(self, key: LookupKey, now: float) -> Entry:
        ttl = self.negative_ttl_s
        return Entry(key.cache_key, None, now, now + ttl, ttl)

    async def announce(self, keys: Sequence[LookupKey]) -> frozenset[str]:
        """Add keys to the filters before the table has them, so that from now on they read
        as "maybe" and a dip for a new customer reads the table rather than being told
        "no customer" while a long load runs. Returns the generations whose filters now
        hold the keys, for ``write`` to skip."""
        blooms = await self._blooms()
        await self._add(blooms, keys)
        return frozenset(b.generation for b in blooms)

    async def _add(self, blooms: Sequence[Bloom], keys: Sequence[LookupKey]) -> None:
        if not blooms:
            return
        for start in range(0, len(keys), WRITE_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for bloom in blooms:
                bloom.queue_adds(pipe, keys[start : start + WRITE_CHUNK])
            await pipe.execute()

    async def write(
        self,
        answers: Sequence[tuple[LookupKey, CustomerRecord]],
        announced: frozenset[str] = frozenset(),
    ) -> int:
        """Cache these answers (as of now, since the table has just been written), and add
        their keys to the filters ``announce`` has not (a warm that started in between).

        In chunks of WRITE_CHUNK keys, so a load of millions never builds one pipeline of
        millions of commands.
        """
        now = self._clock()
        written = 0
        for start in range(0, len(answers), WRITE_CHUNK):
            chunk = answers[start : start + WRITE_CHUNK]
            written += await self._entries.put_many([self._entry(k, r, now) for k, r in chunk])
        blooms = [b for b in await self._blooms() if b.generation not in announced]
        await self._add(blooms, [key for key, _ in answers])
        return written

    async def remove(self, keys: Sequence[LookupKey]) -> int:
        """Replace the answers of keys just deleted from the table with "no customer"."""
        now = self._clock()
        removed = 0
        for start in range(0, len(keys), WRITE_CHUNK):
            chunk = keys[start : start + WRITE_CHUNK]
            removed += await self._entries.put_many([self._gone(k, now) for k in chunk])
        return removed
