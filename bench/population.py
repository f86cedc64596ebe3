"""A synthetic, reproducible customer population, loaded through the project's loader.

Customer ``i`` is ``C-%06d``; it has one or two US numbers drawn without replacement from
a space of real area codes, so every number is a possible (and valid) NANP number. The
same seed always gives the same people, so the spike's callers can be rebuilt without
reading the table back.
"""

from __future__ import annotations

import asyncio
import csv
import random
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.dip.customers import CustomerRecord, entities_for, table_keys
from shared.dip.keys import LOCAL_SECRET, LookupKeys
from shared.dip.loader import load_file
from tools.load import entity_bar

__all__ = ["BENCH_KEYS", "Customer", "Population", "ensure_loaded"]

# Real area codes; exchanges 200-999 that are not N11; any four-digit line number.
_AREA_CODES = (
    212,
    213,
    305,
    312,
    317,
    404,
    415,
    503,
    512,
    602,
    615,
    617,
    702,
    713,
    720,
    801,
    816,
    919,
)
_EXCHANGES = tuple(x for x in range(200, 1000) if x % 100 != 11)
_LINES = 10_000
_SPACE = len(_AREA_CODES) * len(_EXCHANGES) * _LINES
_TIERS = (("Standard", 0.62), ("Silver", 0.2), ("Gold", 0.13), ("Platinum", 0.05))
_LANGUAGES = (("en-US", 0.8), ("es-US", 0.17), ("fr-CA", 0.03))
# A marker row says which population the table holds, so a re-run can skip the load.
# The benchmark's apps read local.settings.json, so they hash keys with its secret.
BENCH_KEYS = LookupKeys(LOCAL_SECRET.encode())
_MARKER_ID = "BENCH-POPULATION"
_MARKER = BENCH_KEYS.key("customerId", _MARKER_ID)


def _number(index: int) -> str:
    area, rest = divmod(index, len(_EXCHANGES) * _LINES)
    exchange, line = divmod(rest, _LINES)
    return f"+1{_AREA_CODES[area]}{_EXCHANGES[exchange]}{line:04d}"


# A multiplier coprime with the space makes k -> (a*k + b) mod space a permutation:
# distinct slots give distinct numbers, spread across every area code.
_MULTIPLIER = 2_654_435_761


def _shuffle(seed: int, k: int) -> int:
    return (_MULTIPLIER * k + seed * 7_919) % _SPACE


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


@dataclass(frozen=True)
class Customer:
    customer_id: str
    phones: tuple[str, ...]


@dataclass(frozen=True)
class Population:
    size: int
    seed: int
    customers: tuple[Customer, ...]
    records: tuple[CustomerRecord, ...]
    # Numbers that belong to nobody: callers the table does not know.
    strangers: tuple[str, ...]

    @classmethod
    def build(cls, size: int, seed: int = 7, strangers: int = 5_000) -> Population:
        """Customer i is the same whatever the size, so a bigger load contains a smaller."""
        customers: list[Customer] = []
        records: list[CustomerRecord] = []
        slot = 0
        for i in range(1, size + 1):
            rng = random.Random(seed * 1_000_003 + i)
            count = 1 if rng.random() < 0.55 else 2
            cid = f"C-{i:06d}"
            customers.append(
                Customer(cid, tuple(_number(_shuffle(seed, slot + k)) for k in range(count)))
            )
            slot += count
            records.append(
                CustomerRecord(cid, _pick(rng, _TIERS), rng.random() < 0.04, _pick(rng, _LANGUAGES))
            )
        # Strangers come from the far end of the same permutation: nobody's number.
        return cls(
            size,
            seed,
            tuple(customers),
            tuple(records),
            tuple(_number(_shuffle(seed, _SPACE - 1 - k)) for k in range(strangers)),
        )

    @property
    def tag(self) -> str:
        return f"generation=2;seed={self.seed};size={self.size}"

    def contained_in(self, tag: str) -> bool:
        """Does a table loaded with ``tag`` hold every customer of this population?"""
        fields = dict(part.split("=", 1) for part in tag.split(";") if "=" in part)
        try:
            return (
                fields["generation"] == "2"
                and int(fields["seed"]) == self.seed
                and int(fields["size"]) >= self.size
            )
        except (KeyError, ValueError):
            return False

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["customerId", "phone", "tier", "isVip", "preferredLanguage"])
            for customer, record in zip(self.customers, self.records, strict=True):
                writer.writerow(
                    [
                        customer.customer_id,
                        ";".join(customer.phones),
                        record.tier,
                        "true" if record.is_vip else "false",
                        record.preferred_language,
                    ]
                )


async def _marker(table: TableClient) -> str | None:
    pk, rk = table_keys(_MARKER)
    try:
        entity = await table.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    return str(entity.get("Tier") or "")


async def ensure_loaded(
    table: TableClient, population: Population, workdir: Path, *, progress: bool = True
) -> dict[str, object]:
    """Load the population through ``shared.dip.loader.load_file`` unless the table has it."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    marker = await _marker(table)
    if marker is not None and population.contained_in(marker):
        return {"loaded": False, "seconds": 0.0, "customers": population.size, "tableHolds": marker}
    path = workdir / f"population-{population.size}-{population.seed}.csv"
    population.write_csv(path)
    report = await load_file(
        path, table, "US", BENCH_KEYS, progress=entity_bar if progress else None
    )
    if report.rejected:
        raise RuntimeError(
            f"the loader rejected {len(report.rejected)} synthetic rows, "
            f"first: {report.rejected[0]}"
        )
    # The marker goes last: a load cut short is redone next time.
    tag = CustomerRecord(_MARKER_ID, population.tag, False, "")
    for entity in entities_for(tag, (), BENCH_KEYS):
        await table.upsert_entity(entity)
    return {
        "loaded": True,
        "seconds": round(loop.time() - started, 1),
        "customers": report.customers,
        "entities": report.entities,
    }
