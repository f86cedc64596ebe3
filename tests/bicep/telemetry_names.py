"""What the app really emits, and a check that a KQL query reads only that.

The workbook (bicep/workbooks/dipguard.workbook.json) and the alert rules
(bicep/modules/alerts.bicep) query two kinds of telemetry:

* the dip's OpenTelemetry metrics, in the ``customMetrics`` table: ``name`` is the
  instrument's name, ``customDimensions`` its attributes. ``metric_contract()`` records
  through ``shared.dip.metrics.DipMetrics`` into an in-memory OpenTelemetry reader, feeding
  it every value the module's own constants list, and reads back which metric carries which
  attribute with which values. Nothing here repeats a metric's name or an attribute's.
* log lines, in ``traces``: ``scale_tick {json}`` (the scale tick), ``surge <id> started by
  <operator>: ...``, ``surge <id> ended early by <operator>`` and ``surge_refused <status>
  <code>[ by <object id>]`` (the surge switch), ``cache_warm {json}`` (the warm) and
  ``dip {json}``. ``real_log_lines()`` gets them from the code: it starts and ends a surge
  through ``SurgeApi`` as a signed-in operator (which runs a real scale tick), is refused
  twice, and captures what the loggers write, and formats a warm's report and a dip's log
  entry as the code does.

``check_query()`` reads a query the way the tests need, with regular expressions rather
than a KQL parser: each ``name == / in / startswith`` literal in a ``customMetrics`` query
must be a metric, each ``customDimensions`` key an attribute of one of the query's metrics,
each literal compared with such an attribute (directly or through an ``extend`` alias) a
value it takes, and each field read from a parsed log line a key the real line has. A use it
cannot read (``customDimensions['x']``, ``name has``...) is reported too, so a query cannot
slip past it by being written differently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from tests.support.keys import SECRET

# ---------------------------------------------------------------------------------------------
# The metrics, as shared/dip/metrics.py emits them
# ---------------------------------------------------------------------------------------------

# metric name -> attribute -> the values it was seen with
type Contract = dict[str, dict[str, frozenset[str]]]


@cache
def metric_contract() -> Contract:
    """Every instrument DipMetrics records, with each attribute and every value it takes."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from shared.dip import metrics as m

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        recorder = m.DipMetrics(provider)
        latencies = [*m.LATENCY_BOUNDS_MS, m.LATENCY_BOUNDS_MS[-1] * 2]
        # The reasons a dip's log entry carries (DipLog.reason): the plain ones, and a
        # database failure as "database: <exception class name>".
        reasons: list[str | None] = [
            None,
            *m.SHED_REASONS,
            "database: TimeoutError",
            "database: HttpResponseError",
        ]
        for source in m.SOURCES:
            for key_kind in m.KEY_KINDS:
                for latency in latencies:
                    recorder.dip(source, key_kind, latency, None)
            for reason in reasons:
                recorder.dip(source, m.KEY_KINDS[0], 1.0, reason)
        for local in (False, True):
            for admitted in (True, False):
                recorder.valve_decision(admitted, local=local)
        for outcome in m.DB_OUTCOMES:
            recorder.db_read(outcome, 12.5)
        recorder.watch_inflight(lambda: 3)
        recorder.watch_readmodel_age(lambda: 3600.0)
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    seen: dict[str, dict[str, set[str]]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                attributes = seen.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    for key, value in (point.attributes or {}).items():
                        attributes.setdefault(key, set()).add(str(value))
    return {
        name: {key: frozenset(values) for key, values in attributes.items()}
        for name, attributes in seen.items()
    }


# ---------------------------------------------------------------------------------------------
# The log lines, as the code writes them
# ---------------------------------------------------------------------------------------------

SURGE_ALWAYS_READY = 15
SURGE_MINUTES = 30
SURGE_REASON = "recall: brand X"


@dataclass(frozen=True)
class LogLines:
    """Real log messages by their first word and a space ("scale_tick ", "surge "...)."""

    by_prefix: dict[str, list[str]]
    surge_id: str


class _MemoryGateway:
    """An ArmGateway that holds one site config and one plan in memory."""

    def __init__(self) -> None:
        from shared.scale.arm import PlanState, SiteState

        self.site = SiteState(always_ready=1, pre_warmed=1)
        self.plan = PlanState("plan-dipguard", "rg-dipguard", 20, 1)

    async def get_site_config(self) -> Any:
        return self.site

    async def patch_site_config(
        self, *, always_ready: int | None = None, pre_warmed: int | None = None
    ) -> None:
        from shared.scale.arm import SiteState

        self.site = SiteState(
            always_ready if always_ready is not None else self.site.always_ready,
            pre_warmed if pre_warmed is not None else self.site.pre_warmed,
        )

    async def get_plan(self) -> Any:
        return self.plan

    async def patch_plan(self, *, max_burst: int) -> None:
        from shared.scale.arm import PlanState

        self.plan = PlanState(self.plan.name, self.plan.resource_group, max_burst, 1)

    async def put_plan(self, *, capacity: int) -> bool:
        return False


@dataclass
class _MemorySurgeTable:
    """The few TableClient calls the surge store makes, over a dict."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def create_table(self) -> None:
        return None

    async def create_entity(self, entity: Mapping[str, Any]) -> None:
        self.rows[str(entity["RowKey"])] = dict(entity)

    async def get_entity(self, partition_key: str, row_key: str) -> dict[str, Any]:
        from azure.core.exceptions import ResourceNotFoundError

        if row_key not in self.rows:
            raise ResourceNotFoundError("not found")
        return dict(self.rows[row_key])

    async def update_entity(self, entity: Mapping[str, Any], **_: Any) -> None:
        self.rows[str(entity["RowKey"])].update(entity)

    def query_entities(self, query_filter: str, **_: Any) -> AsyncIterator[dict[str, Any]]:
        async def rows() -> AsyncIterator[dict[str, Any]]:
            for row in list(self.rows.values()):
                yield dict(row)

        return rows()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _surge_and_tick_lines() -> tuple[list[str], str]:
    """Start a surge and end it through SurgeApi, each with its real scale tick; the
    messages the dipguard loggers wrote meanwhile, and the surge's id."""
    from app.settings import load_settings
    from shared.scale.surge_api import SurgeApi
    from tests.support.schedules import example_schedule
    from tests.support.surges import OPERATOR, principal_headers

    settings = load_settings(
        {
            "CustomerStorage": "UseDevelopmentStorage=true",
            "LOOKUP_KEY_SECRET": SECRET,
            # The example's promotion bursts to 60, as in a region whose limit is 100.
            "SCALE_SCHEDULE": json.dumps(example_schedule("UTC")),
            "SCALE_MAX_BURST_LIMIT": "100",
            "SCALE_SUBSCRIPTION_ID": "00000000-1111-2222-3333-444444444444",
            "SCALE_RESOURCE_GROUP": "rg-dipguard",
            "SCALE_SITE_NAME": "func-dipguard",
            # As behind App Service Authentication: the operator's principal headers count.
            "WEBSITE_AUTH_ENABLED": "True",
        }
    )
    capture = _Capture()
    logger = logging.getLogger("dipguard")
    previous = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        api = SurgeApi(settings.scale, _MemorySurgeTable(), gateway=_MemoryGateway())  # type: ignore[arg-type]
        body = {"alwaysReady": SURGE_ALWAYS_READY, "minutes": SURGE_MINUTES, "reason": SURGE_REASON}
        now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        started = await api.handle(
            "POST", None, json.dumps(body).encode(), headers=OPERATOR, now=now
        )
        assert started.status == 201, started.body
        surge_id = started.body["surge"]["id"]
        ended = await api.handle("DELETE", surge_id, b"", headers=OPERATOR, now=now)
        assert ended.status == 200, ended.body
        # Two refusals: nobody signed in, and an operator without the Surge.Operate role.
        nobody = await api.handle("GET", None, b"", headers={}, now=now)
        assert nobody.status == 401, nobody.body
        without_role = await api.handle("GET", None, b"", headers=principal_headers(()), now=now)
        assert without_role.status == 403, without_role.body
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)
    return capture.messages, surge_id


@cache
def real_log_lines() -> LogLines:
    from shared.dip.lookup import DipLog
    from shared.dip.warm import WarmReport

    messages, surge_id = asyncio.run(_surge_and_tick_lines())
    messages.append(WarmReport(completed=True, generation="g1", entities=10).log_line())
    messages.append(DipLog("ani", "degraded", 2400.0, True, "deadline").line())
    by_prefix: dict[str, list[str]] = {}
    for message in messages:
        first = message.split(" ", 1)[0] + " "
        by_prefix.setdefault(first, []).append(message)
    return LogLines(by_prefix, surge_id)


# ---------------------------------------------------------------------------------------------
# Reading a query
# ---------------------------------------------------------------------------------------------

_STRING = re.compile(r'"([^"]*)"')
_DIM_FORMS = re.compile(
    r'tostring\(\s*customDimensions(?:\["([^"]+)"\]|\.([A-Za-z_]\w*))\s*\)'
    r'|customDimensions(?:\["([^"]+)"\]|\.([A-Za-z_]\w*))'
)
_DIM_TOKEN = "__dim__"
_NAME_EQ = re.compile(r'\bname\s*==\s*"([^"]*)"')
_NAME_IN = re.compile(r"\bname\s+in\s*\(([^)]*)\)")
_NAME_PREFIX = re.compile(r'\bname\s+startswith\s*"([^"]*)"')
_NAME_OTHER = re.compile(r"\bname\s*(?:=~|!=|!~|!in\b|in~|has\b|contains\b|matches\b|endswith\b)")
_ALIAS = re.compile(rf"\b([A-Za-z_]\w*)\s*=\s*{_DIM_TOKEN}(\w+)")
_COMPARE_EQ = re.compile(r'(\b\w+)\s*(==|!=|=~|!~)\s*"([^"]*)"')
_COMPARE_IN = re.compile(r"(\b\w+)\s+(in|!in|in~|!in~)\s*\(([^)]*)\)")
_COMPARE_OTHER = re.compile(r"(\b\w+)\s+(?:has|contains|startswith|endswith|matches regex)\b")
_LOG_PREFIX = re.compile(r'\bmessage\s+startswith\s+"([^"]+)"')
_LOG_JSON = re.compile(
    r"\bextend\s+(\w+)\s*=\s*parse_json\(\s*substring\(\s*message\s*,\s*(\d+)\s*\)\s*\)"
)
_LOG_PARSE = re.compile(r"\|\s*parse\s+message\s+with\s+([^\n|]+)")


def _normalise(query: str) -> tuple[str, list[str]]:
    """The query with each customDimensions read as one token, and what it could not read."""
    problems: list[str] = []

    def token(match: re.Match[str]) -> str:
        key = next(g for g in match.groups() if g is not None)
        if not re.fullmatch(r"\w+", key):
            problems.append(f"customDimensions key {key!r} is not a plain name")
        return f"{_DIM_TOKEN}{key}"

    text = _DIM_FORMS.sub(token, query)
    if "customDimensions" in text:
        problems.append(
            'a customDimensions use this check cannot read (write customDimensions["x"])'
        )
    return text, problems


def _strings(text: str) -> list[str]:
    return _STRING.findall(text)


def _metric_names(text: str, contract: Contract) -> tuple[set[str], list[str]]:
    problems: list[str] = []
    named: set[str] = set()
    for literal in _NAME_EQ.findall(text):
        named.add(literal)
    for inside in _NAME_IN.findall(text):
        named.update(_strings(inside))
    for literal in sorted(named):
        if literal not in contract:
            problems.append(f'metric "{literal}" is not one the app emits')
    metrics = {n for n in named if n in contract}
    for prefix in _NAME_PREFIX.findall(text):
        matching = {n for n in contract if n.startswith(prefix)}
        if not matching:
            problems.append(f'no metric the app emits starts with "{prefix}"')
        metrics |= matching
    if _NAME_OTHER.search(text):
        problems.append("name is compared in a way this check cannot read (use ==, in, startswith)")
    if not named and not _NAME_PREFIX.search(text):
        problems.append("a customMetrics query that names no metric")
    return metrics, problems


def _attribute_values(metrics: set[str], contract: Contract, attribute: str) -> frozenset[str]:
    values: set[str] = set()
    for metric in metrics:
        values |= contract[metric].get(attribute, frozenset())
    return frozenset(values)


def _check_metrics(text: str, contract: Contract) -> list[str]:
    metrics, problems = _metric_names(text, contract)
    carried = {a for m in metrics for a in contract[m]}
    read = set(re.findall(rf"{_DIM_TOKEN}(\w+)", text))
    for attribute in sorted(read - carried):
        metric_names = sorted(metrics) or "any metric"
        problems.append(f'customDimensions["{attribute}"] is not an attribute of {metric_names}')
    aliases = {alias: attribute for alias, attribute in _ALIAS.findall(text)}
    for alias, attribute in aliases.items():
        if alias == "name":
            problems.append(f"the alias name hides customMetrics' own name column ({attribute})")

    def attribute_of(operand: str) -> str | None:
        if operand.startswith(_DIM_TOKEN):
            return operand[len(_DIM_TOKEN) :]
        return aliases.get(operand)

    for operand, _op, literal in _COMPARE_EQ.findall(text):
        attribute = attribute_of(operand)
        if attribute is None or attribute not in carried:
            continue
        if literal not in _attribute_values(metrics, contract, attribute):
            problems.append(f'"{literal}" is not a value of {attribute}')
    for operand, _op, inside in _COMPARE_IN.findall(text):
        attribute = attribute_of(operand)
        if attribute is None or attribute not in carried:
            continue
        for literal in _strings(inside):
            if literal not in _attribute_values(metrics, contract, attribute):
                problems.append(f'"{literal}" is not a value of {attribute}')
    for operand in _COMPARE_OTHER.findall(text):
        if attribute_of(operand) is not None:
            problems.append(f"{operand} is matched in a way this check cannot read (use ==, in)")
    return problems


def _walk(payload: Any, path: list[str]) -> bool:
    node = payload
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def parse_pattern(pattern: str) -> re.Pattern[str]:
    """A regular expression for KQL's ``parse message with "lit" col "lit" col:int ...``
    (simple mode: each column runs to the next literal, the last to the end)."""
    tokens = re.findall(r'"([^"]*)"|([A-Za-z_]\w*)(?::(\w+))?', pattern)
    parts: list[str] = []
    columns = [t for t in tokens if t[1]]
    for literal, column, kind in tokens:
        if column:
            body = r"-?\d+" if kind in ("int", "long") else ".*?"
            if column == columns[-1][1] and kind not in ("int", "long"):
                body = ".*"
            parts.append(f"(?P<{column}>{body})")
        else:
            parts.append(re.escape(literal))
    return re.compile("".join(parts) + "$")


def _check_logs(text: str, lines: LogLines) -> list[str]:
    problems: list[str] = []
    prefixes = _LOG_PREFIX.findall(text)
    for var, offset in _LOG_JSON.findall(text):
        cut = [p for p in prefixes if len(p) == int(offset)]
        if not cut:
            problems.append(f"{var}: substring(message, {offset}) cuts no prefix the query matches")
            continue
        prefix = cut[0]
        real = lines.by_prefix.get(prefix)
        if not real:
            problems.append(f'{var}: the app writes no line starting "{prefix}"')
            continue
        payloads = [json.loads(line[len(prefix) :]) for line in real]
        if re.search(rf"\b{var}\s*\[", text):
            problems.append(f"{var}[...] is read in a way this check cannot read (use {var}.key)")
        for path in sorted(set(re.findall(rf"\b{var}((?:\.[A-Za-z_]\w*)+)", text))):
            keys = path.lstrip(".").split(".")
            if not any(_walk(p, keys) for p in payloads):
                problems.append(f'{var}{path}: no "{prefix.strip()}" line the app writes has it')
        for event in re.findall(rf'tostring\(\s*{var}\.event\s*\)\s*==\s*"([^"]*)"', text):
            if all(p.get("event") != event for p in payloads):
                problems.append(f'{var}.event is never "{event}" in a "{prefix.strip()}" line')
    for pattern in _LOG_PARSE.findall(text):
        regex = parse_pattern(pattern.strip())
        candidates = [line for p in prefixes for line in lines.by_prefix.get(p, [])]
        if not any(regex.match(line) for line in candidates):
            problems.append(f"parse message with {pattern.strip()}: matches no line the app writes")
    return problems


def check_query(
    query: str, contract: Contract | None = None, lines: LogLines | None = None
) -> list[str]:
    """What in ``query`` reads a metric, attribute, value or log field the app does not
    emit; empty when everything it reads is real."""
    contract = metric_contract() if contract is None else contract
    text, problems = _normalise(query)
    if re.search(r"\bcustomMetrics\b", text):
        problems += _check_metrics(text, contract)
    elif _DIM_TOKEN in text:
        problems.append("customDimensions read outside a customMetrics query")
    if re.search(r"\bmessage\b", text):
        problems += _check_logs(text, real_log_lines() if lines is None else lines)
    return problems
