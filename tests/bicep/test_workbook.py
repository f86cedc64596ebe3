"""The workbook: deployed on Application Insights, and reading only what the app emits.

bicep/modules/workbook.bicep deploys bicep/workbooks/dipguard.workbook.json as a shared
workbook linked to the component, with the deployment's MAX_DB_QPS and alert thresholds put
into its queries. Every query in it, and every alert query, is held to the metrics, the
attributes and values, and the log line fields the code really emits
(tests/bicep/telemetry_names.py); the checker is shown to catch a name renamed on either
side. docs/img/workbook-layout.png is drawn from the JSON by bicep/workbooks/layout.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
import sys
from collections.abc import Mapping
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from tests.bicep import telemetry_names as tn
from tests.support import bicep_model_check as mc
from tests.support.bicep import (
    BICEP,
    MAIN,
    MODULES,
    ROOT,
    default_of,
    dotted,
    function,
    module,
    module_call,
    parsed,
    resource,
)
from tests.support.surges import OPERATOR_NAME, OPERATOR_OID

WORKBOOK_JSON = BICEP / "workbooks" / "dipguard.workbook.json"
LAYOUT_SCRIPT = BICEP / "workbooks" / "layout.py"
LAYOUT_PNG = ROOT / "docs" / "img" / "workbook-layout.png"
APPI_ID = (
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-dipguard"
    "/providers/Microsoft.Insights/components/appi-dipguard-prod"
)
WORKSPACE_ID = (
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-dipguard"
    "/providers/Microsoft.OperationalInsights/workspaces/log-dipguard-prod"
)
# Values as main.bicep would pass them; distinct, so each can be found where it lands.
DEPLOYED = {
    "appInsightsResourceId": APPI_ID,
    "logAnalyticsWorkspaceResourceId": WORKSPACE_ID,
    "maxDbQps": 350,
    "readModelMaxAgeSeconds": 93600,
    "degradedPercentThreshold": 7,
    "shedPercentThreshold": 12,
}


def _evaluate(value: Any, variables: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """The few expressions workbook.bicep builds serializedData with."""
    if isinstance(value, str) and value in variables:
        return _evaluate(variables[value]["value"], variables, params)
    if isinstance(value, str) and value in params:
        return params[value]
    if isinstance(value, str):
        return value
    replaced = function(value, "replace")
    if replaced is not None:
        original = _evaluate(replaced["original_string"], variables, params)
        old = _evaluate(replaced["old_string"], variables, params)
        new = _evaluate(replaced["new_string"], variables, params)
        assert old in original, f"{old} is not in the workbook template"
        return original.replace(old, new)
    loaded = function(value, "load_text_content")
    if loaded is not None:
        return (MODULES / loaded["file_path"]).read_text(encoding="utf-8")
    converted = function(value, "string")
    if converted is not None:
        return str(_evaluate(converted["value_to_convert"], variables, params))
    raise AssertionError(f"workbook.bicep builds serializedData with {value!r}")


def serialized(params: Mapping[str, Any] = DEPLOYED) -> str:
    """serializedData as workbook.bicep deploys it for these parameters."""
    doc = module("workbook")
    body = resource(doc, "workbook")
    return str(_evaluate(body["properties"]["serializedData"], doc["variables"], params))


@cache
def deployed_workbook() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(serialized())
    return data


def query_items(workbook: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [item for item in workbook["items"] if item["type"] == 3]


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"__[A-Z][A-Z_]*__", text))


# --- the resource ----------------------------------------------------------------------------


def test_the_workbook_is_a_shared_workbook_linked_to_application_insights() -> None:
    doc = module("workbook")
    (symbol,) = doc["resources"]
    res = doc["resources"][symbol]
    assert (res["type"], res["api_version"]) == ("Microsoft.Insights/workbooks", "2023-06-01")
    body = resource(doc, symbol)
    props = body["properties"]
    assert body["kind"] == "shared"
    assert props["category"] == "workbook"
    assert props["sourceId"] == "appInsightsResourceId"
    assert props["version"] == json.loads(WORKBOOK_JSON.read_text())["version"] == "Notebook/1.0"
    # A name derived from the component, so a redeploy updates the same workbook.
    name = function(body["name"], "guid")
    assert name is not None and "appInsightsResourceId" in name.values()
    assert "new_guid" not in json.dumps(body) and "utc_now" not in json.dumps(body)
    assert mc.check_resource(res["type"], body) == []


def test_main_links_the_workbook_to_the_monitoring_component_and_the_deployed_limits() -> None:
    main = parsed(MAIN)
    call = module_call(main, "modules/workbook.bicep")["params"]
    assert dotted(call["appInsightsResourceId"]) == "monitoring.outputs.resourceId"
    # The workspace the diagnostic settings send the gateway logs to.
    assert (
        dotted(call["logAnalyticsWorkspaceResourceId"])
        == "monitoring.outputs.workspaceResourceId"
        == dotted(module_call(main, "modules/diagnostics.bicep")["params"]["workspaceResourceId"])
    )
    assert call["maxDbQps"] == "maxDbQps"
    # The charts draw the thresholds the alerts fire at: the same values go to both.
    alerts = module_call(main, "modules/alerts.bicep")["params"]
    for name in ("readModelMaxAgeSeconds", "degradedPercentThreshold", "shedPercentThreshold"):
        assert call[name] == alerts[name] == name
    assert call["tags"] == "allTags"
    required = {n for n, p in module("workbook")["parameters"].items() if p["default"] is None}
    assert required <= set(call)
    assert dotted(main["outputs"]["WORKBOOK_ID"]["value"]) == "workbook.outputs.resourceId"


def test_every_placeholder_in_the_template_is_replaced_by_a_deployed_value() -> None:
    template = WORKBOOK_JSON.read_text()
    json.loads(template)  # valid JSON with the placeholders in place
    replaced = _placeholders(template) - _placeholders(serialized())
    assert replaced == _placeholders(template) != set()
    assert _placeholders(serialized()) == set()
    workbook = deployed_workbook()
    assert workbook["fallbackResourceIds"] == [APPI_ID]
    (reads,) = [i for i in query_items(workbook) if "dipguard.db.reads" in i["content"]["query"]]
    assert reads["content"]["chartSettings"]["customThresholdLine"] == "350"
    (age,) = [i for i in query_items(workbook) if "dipguard.readmodel.age" in i["content"]["query"]]
    assert "round(93600 / 3600.0, 2)" in age["content"]["query"]
    (share,) = [
        i
        for i in query_items(workbook)
        if "dipguard.sheds" in i["content"]["query"] and "degraded" in i["content"]["query"]
    ]
    assert "degradedAlertPercent = 7" in share["content"]["query"]
    assert "shedAlertPercent = 12" in share["content"]["query"]


# --- the content -----------------------------------------------------------------------------


def test_the_workbook_opens_with_a_time_range_and_every_query_follows_it() -> None:
    workbook = deployed_workbook()
    assert workbook["version"] == "Notebook/1.0"
    kinds = [item["type"] for item in workbook["items"]]
    assert kinds[:2] == [1, 9]
    (time_range,) = workbook["items"][1]["content"]["parameters"]
    assert (time_range["name"], time_range["type"], time_range["isRequired"]) == (
        "TimeRange",
        4,
        True,
    )
    names = [item["name"] for item in workbook["items"]]
    assert len(names) == len(set(names))
    for item in query_items(workbook):
        content = item["content"]
        assert content["version"] == "KqlItem/1.0"
        assert (content["queryType"], content["resourceType"]) == (
            0,
            "microsoft.insights/components",
        )
        assert content["timeContextFromParameter"] == "TimeRange"
        assert "{TimeRange}" in content["query"], item["name"]
        assert content["title"] and content["visualization"]


def test_the_workbook_shows_what_operators_asked_for() -> None:
    queries = {item["name"]: item["content"]["query"] for item in query_items(deployed_workbook())}
    text = "\n".join(queries.values())
    # Every metric the app emits has a place.
    assert {f'"{name}"' for name in tn.metric_contract()} <= set(
        re.findall(r'"dipguard\.[\w.]+"', text)
    )
    # Percentiles from the latency buckets, cumulated bucket by bucket like
    # Prometheus' histogram_quantile.
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"minif(bound, cumulative >= {quantile} * total)" in queries["percentiles-by-source"]
    assert "row_cumsum(n, " in queries["p95-by-source"]
    # Instances against the schedule from the fields a scale_tick line carries (traces are
    # sampled: no count of lines).
    schedule = queries["instances-vs-schedule"]
    assert "tick.desired.alwaysReady" in schedule and "dcount(cloud_RoleInstance)" in schedule
    assert "count()" not in text


def test_each_dip_counts_once_under_its_own_latency_bucket() -> None:
    """The queries add every latency_le bucket up to count dips, and order the buckets by
    their bound: so a dip must count in one bucket only, and every bound but +Inf must be
    a number, in the code as it records."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

    from shared.dip import metrics as m

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        m.DipMetrics(provider).dip("cache", "ani", 7.0, None)
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    (dips,) = [
        metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == m.DIPS
    ]
    (point,) = dips.data.data_points
    assert isinstance(point, NumberDataPoint) and point.attributes is not None
    assert point.value == 1
    buckets = tn.metric_contract()[m.DIPS][m.ATTR_LATENCY_LE]
    assert point.attributes[m.ATTR_LATENCY_LE] == min(
        b for b in buckets if b != "+Inf" and float(b) >= 7
    )
    assert all(float(b) > 0 for b in buckets - {"+Inf"}) and "+Inf" in buckets


# --- names: everything queried is emitted ----------------------------------------------------


def test_every_workbook_query_reads_only_what_the_app_emits() -> None:
    problems = {
        item["name"]: tn.check_query(item["content"]["query"])
        for item in query_items(deployed_workbook())
    }
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_surge_charts_read_the_surge_switch_and_the_scale_tick_as_they_write() -> None:
    lines = tn.real_log_lines()
    queries = {item["name"]: item["content"]["query"] for item in query_items(deployed_workbook())}
    patterns = re.findall(r"\|\s*parse\s+message\s+with\s+([^\n|]+)", queries["surge-switch"])
    started, ended = (tn.parse_pattern(p.strip()) for p in patterns)
    found = [m.groupdict() for line in lines.by_prefix["surge "] if (m := started.match(line))]
    assert found == [
        {
            "startedId": lines.surge_id,
            # The operator who raised it: object id and display name (quoted as JSON).
            "startedBy": f'{OPERATOR_OID} "{OPERATOR_NAME}"',
            "alwaysReady": str(tn.SURGE_ALWAYS_READY),
            "minutes": str(tn.SURGE_MINUTES),
            "reason": tn.SURGE_REASON,
        }
    ]
    ended_by = [
        (m["endedId"], m["endedBy"])
        for line in lines.by_prefix["surge "]
        if (m := ended.match(line))
    ]
    assert ended_by == [(lines.surge_id, f'{OPERATOR_OID} "{OPERATOR_NAME}"')]
    # A tick that holds always-ready for a surge names it in reasons.alwaysReady; the chart
    # keeps the entries that start with the label's prefix and cuts the prefix off.
    ticks = queries["surges-in-ticks"]
    prefix = re.search(r'reason startswith "([^"]+)"', ticks)
    cut = re.search(r"substring\(reason, (\d+)\)", ticks)
    assert prefix and cut and int(cut.group(1)) == len(prefix.group(1))
    reasons = [
        reason
        for line in lines.by_prefix["scale_tick "]
        for reason in json.loads(line.split(" ", 1)[1])["reasons"]["alwaysReady"]
        if reason.startswith(prefix.group(1))
    ]
    assert [r[len(prefix.group(1)) :] for r in reasons] == [lines.surge_id]


def test_the_sign_in_view_shows_each_doors_refusals_by_caller() -> None:
    queries = {item["name"]: item["content"]["query"] for item in query_items(deployed_workbook())}
    # The gateway: API Management's refusals from its gateway logs in the workspace, by the
    # caller's address and why the gateway refused.
    gateway = queries["gateway-refusals"]
    assert gateway.startswith(f'workspace("{WORKSPACE_ID}").ApiManagementGatewayLogs\n')
    assert "| where ResponseCode in (401, 403, 429)" in gateway
    assert "callerAddress = CallerIpAddress" in gateway
    assert "errorReason = LastErrorReason" in gateway
    # The apps: the 401s and 403s each function app answered, by app.
    apps = queries["app-refusals"]
    assert apps.startswith("requests\n")
    assert '| where resultCode in ("401", "403")' in apps
    assert "cloud_RoleName" in apps and "sum(itemCount)" in apps
    # The surge switch: its refusal lines, cut into status, code and the operator's object id.
    lines = tn.real_log_lines()
    (pattern,) = re.findall(r"\|\s*parse\s+message\s+with\s+([^\n|]+)", queries["surge-refusals"])
    refused = tn.parse_pattern(pattern.strip())
    found = [
        m.groupdict() for line in lines.by_prefix["surge_refused "] if (m := refused.match(line))
    ]
    statuses = sorted(int(f["status"]) for f in found)
    assert statuses == [401, 403]
    (forbidden,) = [f for f in found if f["status"] == "403"]
    code, _, object_id = forbidden["refusal"].partition(" by ")
    assert code and object_id == OPERATOR_OID
    assert 'split(refusal, " by ")' in queries["surge-refusals"]


def test_every_alert_query_reads_only_what_the_app_emits() -> None:
    from tests.bicep.test_monitoring import alert_rules

    problems = {name: tn.check_query(rule["query"]) for name, rule in alert_rules().items()}
    assert {name: found for name, found in problems.items() if found} == {}


# --- the checker catches a rename on either side ---------------------------------------------


def _query(name: str) -> str:
    (query,) = [
        i["content"]["query"] for i in query_items(deployed_workbook()) if i["name"] == name
    ]
    return query


def _renamed_attribute(contract: tn.Contract, metric: str, old: str, new: str) -> tn.Contract:
    renamed = {name: dict(attributes) for name, attributes in contract.items()}
    renamed[metric][new] = renamed[metric].pop(old)
    return renamed


@pytest.mark.parametrize(
    ("item", "old", "new", "expected"),
    [
        ("dips-by-source", '"dipguard.dips"', '"dipguard.dip"', 'metric "dipguard.dip"'),
        (
            "valve-decisions",
            'customDimensions["valve"]',
            'customDimensions["breaker"]',
            '"breaker"',
        ),
        ("shed-and-degraded-share", 'source == "degraded"', 'source == "fallback"', '"fallback"'),
        (
            "valve-decisions",
            'customDimensions["valve"]',
            "customDimensions['valve']",
            "cannot read",
        ),
        ("instances-vs-schedule", "tick.desired.alwaysReady", "tick.wanted.alwaysReady", "wanted"),
        ("instances-vs-schedule", "substring(message, 11)", "substring(message, 10)", "cuts no"),
        ("warm-runs", "warm.pagesThisRun", "warm.pagesRead", "pagesRead"),
        ("surge-switch", '" started by "', '" raised by "', "matches no line"),
    ],
)
def test_the_check_catches_a_name_changed_in_a_query(
    item: str, old: str, new: str, expected: str
) -> None:
    query = _query(item)
    assert tn.check_query(query) == []
    assert old in query
    problems = tn.check_query(query.replace(old, new))
    assert any(expected in p for p in problems), problems


def test_the_check_catches_a_name_changed_in_the_code() -> None:
    from shared.dip import metrics as m

    contract = tn.metric_contract()
    share = _query("shed-and-degraded-share")
    # The metric renamed in shared/dip/metrics.py only.
    renamed = {n.replace(m.SHEDS, "dipguard.shed"): a for n, a in contract.items()}
    assert any(m.SHEDS in p for p in tn.check_query(share, renamed))
    # The attribute renamed.
    renamed = _renamed_attribute(contract, m.DIPS, m.ATTR_SOURCE, "answer_source")
    assert any('["source"]' in p for p in tn.check_query(share, renamed))
    # A value renamed.
    renamed = {n: dict(a) for n, a in contract.items()}
    renamed[m.DIPS][m.ATTR_SOURCE] = frozenset(
        {"fallback"} | (contract[m.DIPS][m.ATTR_SOURCE] - {"degraded"})
    )
    assert any('"degraded"' in p for p in tn.check_query(share, renamed))
    # A log line's field renamed in shared/scale/tick.py only.
    lines = tn.real_log_lines()
    ticks = [t.replace('"desired":', '"wanted":') for t in lines.by_prefix["scale_tick "]]
    changed = tn.LogLines({**lines.by_prefix, "scale_tick ": ticks}, lines.surge_id)
    assert any(
        "desired" in p for p in tn.check_query(_query("instances-vs-schedule"), lines=changed)
    )


# --- the picture in the docs -----------------------------------------------------------------


def _layout() -> ModuleType:
    spec = importlib.util.spec_from_file_location("workbook_layout", LAYOUT_SCRIPT)
    assert spec is not None and spec.loader is not None
    layout = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = layout  # its dataclass looks its module up while it is defined
    try:
        spec.loader.exec_module(layout)
    finally:
        del sys.modules[spec.name]
    return layout


def test_the_layout_picture_is_small_and_drawn_from_the_current_workbook() -> None:
    from PIL import Image

    assert LAYOUT_PNG.stat().st_size < 100 * 1024
    with Image.open(LAYOUT_PNG) as image:
        recorded = image.info.get("Source", "")
    digest = hashlib.sha256(WORKBOOK_JSON.read_bytes()).hexdigest()
    assert digest in recorded, "redraw it: python bicep/workbooks/layout.py"


def test_the_layout_places_every_item_in_grid_order() -> None:
    layout = _layout()
    workbook = json.loads(WORKBOOK_JSON.read_text())
    boxes = layout.place(workbook["items"])
    assert [b.name for b in boxes] == [item["name"] for item in workbook["items"]]
    for before, after in itertools.pairwise(boxes):
        assert (after.row, after.column) > (before.row, before.column)
    halves = [b for b in boxes if b.width == 0.5]
    assert halves and all(b.column in (0.0, 0.5) for b in halves)


def test_default_thresholds_match_the_alerts() -> None:
    workbook, alerts = module("workbook"), module("alerts")
    for name in ("degradedPercentThreshold", "shedPercentThreshold"):
        assert default_of(workbook, name) == default_of(alerts, name)
