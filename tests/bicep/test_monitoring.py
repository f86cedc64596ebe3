"""Workspace-based Application Insights and the alert rules.

Each alert reads what it claims to (degraded answers, p95 latency, 5xx, scale schedule
failures) with its threshold and window, and the alert queries read the log lines the app
actually writes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support import bicep_model_check as mc
from tests.support.bicep import default_of, dotted, function, module, resources_of


def test_monitoring_is_workspace_based_application_insights_with_entra_ingestion() -> None:
    monitoring = module("monitoring")
    (component,) = resources_of(monitoring, "Microsoft.Insights/components")
    assert dotted(component["properties"]["WorkspaceResourceId"]) == "workspace.id"
    assert component["properties"]["DisableLocalAuth"] is True
    (_workspace,) = resources_of(monitoring, "Microsoft.OperationalInsights/workspaces")


def _alert_rules() -> dict[str, dict[str, Any]]:
    alerts = module("alerts")
    rules = {}
    for symbol, res in alerts["resources"].items():
        if res["type"] == "Microsoft.Insights/scheduledQueryRules":
            body = mc._unwrap_resource_body(res["config"])
            (criterion,) = body["properties"]["criteria"]["allOf"]
            query = criterion["query"]
            replaced = function(query, "replace")
            if replaced is not None:
                query = replaced["original_string"]
            if isinstance(query, str) and query in alerts["variables"]:
                query = alerts["variables"][query]["value"]
            rules[symbol] = {**criterion, "query": query, "properties": body["properties"]}
    return rules


def test_alert_on_degraded_answers_over_a_threshold_for_five_minutes() -> None:
    rule = _alert_rules()["degradedAlert"]
    assert 'startswith "dip "' in rule["query"]
    assert 'dip.source) == "degraded"' in rule["query"]
    assert rule["metricMeasureColumn"] == "degradedPercent"
    assert rule["threshold"] == "degradedPercentThreshold"
    assert rule["properties"]["windowSize"] == "PT5M"
    assert default_of(module("alerts"), "degradedPercentThreshold") == 5


def test_alert_on_p95_dip_latency_over_one_second() -> None:
    rule = _alert_rules()["latencyAlert"]
    assert '"ivr_lookup"' in rule["query"]
    assert "percentile(duration, 95)" in rule["query"]
    assert rule["metricMeasureColumn"] == "p95DurationMs"
    assert rule["threshold"] == "p95LatencyThresholdMs"
    assert default_of(module("alerts"), "p95LatencyThresholdMs") == 1000


def test_alert_on_any_5xx_from_the_function() -> None:
    rule = _alert_rules()["serverErrorAlert"]
    assert '"ivr_lookup"' in rule["query"]
    assert "toint(resultCode) >= 500" in rule["query"]
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", 0)


def test_alert_on_scale_schedule_failures() -> None:
    rule = _alert_rules()["scaleFailureAlert"]
    assert 'startswith "scale_tick "' in rule["query"]
    for outcome in ("failed", "partial", "invalid_schedule"):
        assert f'"{outcome}"' in rule["query"]
    assert '"scale_schedule"' in rule["query"]
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", 0)


def _kql_cut(query: str, message: str) -> dict[str, Any] | None:
    """What the query's `startswith` + `parse_json(substring(message, n))` makes of a line."""
    prefix = re.search(r'where message startswith "([^"]+)"', query)
    offset = re.search(r"parse_json\(substring\(message, (\d+)\)\)", query)
    assert prefix and offset
    if not message.startswith(prefix.group(1)):
        return None
    return json.loads(message[int(offset.group(1)) :])


def test_alert_queries_read_the_log_lines_the_app_writes() -> None:
    from shared.dip.lookup import DipLog
    from shared.scale.tick import TickReport

    rules = _alert_rules()
    dip = DipLog("ani", "degraded", 2400.0, True, "deadline").line()
    assert _kql_cut(rules["degradedAlert"]["query"], dip) == {
        "event": "dip",
        "keyKind": "ani",
        "source": "degraded",
        "latencyMs": 2400.0,
        "shed": True,
        "reason": "deadline",
    }
    tick = _kql_cut(rules["scaleFailureAlert"]["query"], TickReport(outcome="failed").log_line())
    assert tick is not None and (tick["event"], tick["outcome"]) == ("scale_tick", "failed")
    assert _kql_cut(rules["degradedAlert"]["query"], TickReport().log_line()) is None
