"""Workspace-based Application Insights and the alert rules.

Each alert reads what it claims to (degraded and shed dips, the local valve, a stale read
model, p95 latency, 5xx, scale schedule failures) with its threshold and window. The rules
on the dip's metrics query customMetrics, never the sampled traces; tests/bicep/
test_workbook.py holds every alert query to the names the app emits.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.bicep import telemetry_names as tn
from tests.support import bicep_model_check as mc
from tests.support.bicep import (
    MAIN,
    ROOT,
    DeploymentFailure,
    Template,
    app_settings_for,
    default_of,
    dotted,
    function,
    module,
    module_call,
    param_values,
    parsed,
    resolve,
    resources_of,
)


def test_monitoring_is_workspace_based_application_insights_with_entra_ingestion() -> None:
    monitoring = module("monitoring")
    (component,) = resources_of(monitoring, "Microsoft.Insights/components")
    assert dotted(component["properties"]["WorkspaceResourceId"]) == "workspace.id"
    assert component["properties"]["DisableLocalAuth"] is True
    (_workspace,) = resources_of(monitoring, "Microsoft.OperationalInsights/workspaces")


def alert_rules() -> dict[str, dict[str, Any]]:
    """Each scheduled query rule's criterion, its query text (placeholders left in) and
    its properties, by symbol."""
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


def test_alert_rules_on_the_dips_read_metrics_not_sampled_traces() -> None:
    rules = alert_rules()
    on_metrics = {"degradedAlert", "shedAlert", "localValveAlert", "readModelAgeAlert"}
    for symbol in on_metrics:
        assert rules[symbol]["query"].lstrip().startswith("customMetrics"), symbol
        assert "traces" not in rules[symbol]["query"], symbol
    # Requests and scale ticks have no metric; those rules stay where they were.
    assert set(rules) - on_metrics == {"latencyAlert", "serverErrorAlert", "scaleFailureAlert"}


def test_alert_on_degraded_answers_over_a_threshold_for_five_minutes() -> None:
    from shared.dip import metrics as m

    rule = alert_rules()["degradedAlert"]
    assert f'where name == "{m.DIPS}"' in rule["query"]
    assert f'tostring(customDimensions["{m.ATTR_SOURCE}"])' in rule["query"]
    assert 'sumif(value, source == "degraded")' in rule["query"]
    assert "where dips >= __MIN_DIPS__" in rule["query"]
    assert rule["metricMeasureColumn"] == "degradedPercent"
    assert rule["threshold"] == "degradedPercentThreshold"
    assert rule["properties"]["windowSize"] == "PT5M"
    assert default_of(module("alerts"), "degradedPercentThreshold") == 5


def test_alert_on_shed_dips_over_a_threshold_with_the_same_floor() -> None:
    from shared.dip import metrics as m

    rule = alert_rules()["shedAlert"]
    assert f'sumif(value, name == "{m.SHEDS}")' in rule["query"]
    assert f'sumif(value, name == "{m.DIPS}")' in rule["query"]
    assert "where dips >= __MIN_DIPS__" in rule["query"]
    body = mc._unwrap_resource_body(module("alerts")["resources"]["shedAlert"]["config"])
    (criterion,) = body["properties"]["criteria"]["allOf"]
    replaced = function(criterion["query"], "replace")
    assert replaced is not None and replaced["new_string"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "degradedMinimumDips"}}
    }
    assert (rule["metricMeasureColumn"], rule["threshold"]) == (
        "shedPercent",
        "shedPercentThreshold",
    )
    assert rule["properties"]["windowSize"] == "PT5M"
    assert default_of(module("alerts"), "shedPercentThreshold") == 10
    assert default_of(parsed(MAIN), "shedPercentThreshold") == 10


def test_alert_on_local_valve_decisions_above_a_few_stray_redis_failures() -> None:
    from shared.dip import metrics as m

    rule = alert_rules()["localValveAlert"]
    assert f'where name == "{m.VALVE_DECISIONS}"' in rule["query"]
    assert f'tostring(customDimensions["{m.ATTR_VALVE}"]) == "local"' in rule["query"]
    assert "local" in m.VALVES
    # The threshold is the module's parameter (20 by default), not 0: one failed Redis call
    # makes one local decision and must not page anyone.
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", "localValveDecisionsThreshold")
    text = (ROOT / "bicep" / "modules" / "alerts.bicep").read_text(encoding="utf-8")
    assert "param localValveDecisionsThreshold int = 20" in text
    assert rule["properties"]["severity"] == 1


def test_alert_on_a_read_model_older_than_the_app_trusts() -> None:
    from shared.dip import metrics as m

    rule = alert_rules()["readModelAgeAlert"]
    assert f'where name == "{m.READMODEL_AGE}"' in rule["query"]
    assert "max(value)" in rule["query"]
    assert (rule["metricMeasureColumn"], rule["threshold"]) == (
        "readModelAgeSeconds",
        "readModelMaxAgeSeconds",
    )
    assert rule["properties"]["windowSize"] == "PT15M"


def _read_model_alert_seconds(overrides: dict[str, Any]) -> int:
    """main.bicep's readModelMaxAgeSeconds for these parameters: readModelAgeAlertSeconds,
    or when it is 0 the READ_MODEL_MAX_AGE_SECONDS the app is deployed with."""
    main = parsed(MAIN)
    chosen = main["variables"]["readModelMaxAgeSeconds"]["value"]["operator"]
    assert chosen["type"] == "conditional"
    condition = chosen["operands"]["condition"]["operator"]
    assert condition == {
        "type": "equals",
        "operands": {"operand_1": "readModelAgeAlertSeconds", "operand_2": 0},
    }
    values = param_values(overrides)
    if values["readModelAgeAlertSeconds"] != 0:
        # The parameter itself, or a fail-early stop for a value the alert would refuse.
        return int(resolve(chosen["operands"]["false_value"], Template(main, values)))
    as_int = function(chosen["operands"]["true_value"], "int")
    assert as_int is not None
    accessor = as_int["value_to_convert"]["operator"]
    assert accessor["type"] == "property_accessor"
    assert function(accessor["operands"]["operand_1"], "union") == {
        "arg_1": "tuningDefaults",
        "arg_2": "appTuning",
    }
    return int(app_settings_for(overrides)[accessor["operands"]["operand_2"]])


def test_the_read_model_alert_follows_the_apps_own_age_limit() -> None:
    main = parsed(MAIN)
    for path in ("modules/alerts.bicep", "modules/workbook.bicep"):
        call = module_call(main, path)["params"]
        assert call["readModelMaxAgeSeconds"] == "readModelMaxAgeSeconds"
    assert _read_model_alert_seconds({}) == 93600  # 26 h: a daily warm plus two hours
    tuned = {"appTuning": {"READ_MODEL_MAX_AGE_SECONDS": "7200"}}
    assert _read_model_alert_seconds(tuned) == 7200
    assert _read_model_alert_seconds({**tuned, "readModelAgeAlertSeconds": 50000}) == 50000
    assert _read_model_alert_seconds({"readModelAgeAlertSeconds": 60}) == 60


@pytest.mark.parametrize("seconds", [1, 59])
def test_a_read_model_alert_age_below_a_minute_fails_the_deployment_early(seconds: int) -> None:
    # The alert rule and the workbook take at least 60 s; a value they would refuse stops the
    # deployment in main.bicep, with the parameter's name.
    with pytest.raises(DeploymentFailure, match="readModelAgeAlertSeconds"):
        _read_model_alert_seconds({"readModelAgeAlertSeconds": seconds})


def test_alert_on_p95_dip_latency_over_one_second() -> None:
    rule = alert_rules()["latencyAlert"]
    assert '"ivr_lookup"' in rule["query"]
    assert "percentile(duration, 95)" in rule["query"]
    assert rule["metricMeasureColumn"] == "p95DurationMs"
    assert rule["threshold"] == "p95LatencyThresholdMs"
    assert default_of(module("alerts"), "p95LatencyThresholdMs") == 1000


def test_alert_on_any_5xx_from_the_function() -> None:
    rule = alert_rules()["serverErrorAlert"]
    assert '"ivr_lookup"' in rule["query"]
    assert "toint(resultCode) >= 500" in rule["query"]
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", 0)


def test_alert_on_scale_schedule_failures() -> None:
    rule = alert_rules()["scaleFailureAlert"]
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
    parsed_line: dict[str, Any] = json.loads(message[int(offset.group(1)) :])
    return parsed_line


def test_the_scale_alert_reads_the_tick_line_the_app_writes() -> None:
    from shared.scale.tick import TickReport

    query = alert_rules()["scaleFailureAlert"]["query"]
    tick = _kql_cut(query, TickReport(outcome="failed").log_line())
    assert tick is not None and (tick["event"], tick["outcome"]) == ("scale_tick", "failed")
    for line in tn.real_log_lines().by_prefix["scale_tick "]:
        assert _kql_cut(query, line) is not None
    assert _kql_cut(query, tn.real_log_lines().by_prefix["dip "][0]) is None


def _app_of_each_function() -> dict[str, set[str]]:
    """The apps (DIPGUARD_FUNCTIONS values but "all") that register each function."""
    from app import functions

    text = (ROOT / "app" / "functions.py").read_text()
    blueprint_of = dict(
        (name, symbol)
        for symbol, name in re.findall(r'^@(\w+)\.function_name\("(\w+)"\)', text, re.MULTILINE)
    )
    apps: dict[str, set[str]] = {}
    for name, symbol in blueprint_of.items():
        blueprint = getattr(functions, symbol)
        apps[name] = {
            app
            for app, chosen in functions.BLUEPRINTS.items()
            if app != "all" and blueprint in chosen
        }
    return apps


def test_each_alert_on_requests_reads_a_function_only_one_app_serves() -> None:
    # Both apps write to one Application Insights component: an alert on requests is the
    # lookup app's or the operator app's by the function it names, which is registered in one
    # app only (app/functions.py, by DIPGUARD_FUNCTIONS).
    apps = _app_of_each_function()
    assert apps["ivr_lookup"] == {"lookup"} and apps["scale_schedule"] == {"operator"}
    read = {}
    for symbol, rule in alert_rules().items():
        query = rule["query"]
        if re.search(r"^\s*\(?requests\b", query, re.MULTILINE):
            names = set(re.findall(r'(?:name|operation_Name) == "(\w+)"', query))
            assert names, f"{symbol} reads requests of every function"
            (function_name,) = names
            (app,) = apps[function_name]
            read[symbol] = app
    assert sorted(read.values()) == ["lookup", "lookup", "operator"]
