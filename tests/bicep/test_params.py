"""The parameter files, azure.yaml and the CI workflow agree with main.bicep.

The dev and prod .bicepparam files set only known parameters within their limits, with
schedules the scale timer accepts; dev is cheap and prod zone-redundant. azd's
main.parameters.json maps only known parameters, azure.yaml deploys the Python function from
bicep/, and the CI workflow builds and previews the deployment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from shared.scale.schedule import parse_schedule
from tests.support.bicep import (
    BICEP,
    MAIN,
    PARAM_FILES,
    ROOT,
    bicepparam_doc,
    bicepparam_values,
    decorators,
    effective_schedule,
    param_values,
    parsed,
)


def test_there_is_a_dev_and_a_prod_parameter_file() -> None:
    assert [p.name for p in PARAM_FILES] == ["dev.bicepparam", "prod.bicepparam"]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_file_sets_only_known_parameters_within_their_limits(path: Path) -> None:
    using, _ = bicepparam_doc(path)
    assert (path.parent / using).resolve() == MAIN
    main = parsed(MAIN)["parameters"]
    values = bicepparam_values(path)
    assert set(values) <= set(main)
    required = {name for name, p in main.items() if p["default"] is None}
    assert required <= set(values), f"{path.name} misses {required - set(values)}"
    for name, value in values.items():
        rules = decorators(main[name])
        if "allowed" in rules:
            assert value in rules["allowed"], name
        if "min_value" in rules:
            assert value >= rules["min_value"], name
        if "max_value" in rules:
            assert value <= rules["max_value"], name
        if "max_length" in rules:
            assert len(value) <= rules["max_length"], name


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_file_schedule_is_one_the_scale_timer_accepts(path: Path) -> None:
    values = param_values(bicepparam_values(path))
    zone_redundant = bool(values["zoneRedundant"])
    if zone_redundant:
        assert values["alwaysReadyInstanceCount"] >= 3
    # The region's burst limit, as the app will hold the schedule to it (SCALE_MAX_BURST_LIMIT).
    limit = values["maxBurstLimit"]
    assert values["maximumElasticWorkerCount"] <= limit
    schedule = effective_schedule(values)
    parsed_schedule = parse_schedule(
        json.dumps(schedule), zone_redundant=zone_redundant, max_burst_limit=limit
    )
    bursts = [parsed_schedule.default.max_burst] + [
        w.levels.max_burst for w in parsed_schedule.windows
    ]
    assert all(b is None or b <= values["maximumElasticWorkerCount"] for b in bursts)


def test_dev_is_cheap_and_prod_is_zone_redundant() -> None:
    dev = bicepparam_values(BICEP / "dev.bicepparam")
    prod = bicepparam_values(BICEP / "prod.bicepparam")
    assert (dev["planSku"], dev["apimSkuName"], dev["redisSkuName"]) == (
        "EP1",
        "Developer",
        "Balanced_B0",
    )
    assert dev["redisHighAvailability"] is False and dev["storageSkuName"] == "Standard_LRS"
    assert prod["zoneRedundant"] is True and prod["alwaysReadyInstanceCount"] >= 3
    assert prod["redisHighAvailability"] is True and prod["storageSkuName"] == "Standard_ZRS"


def test_azd_parameters_file_maps_only_known_parameters() -> None:
    doc = json.loads((BICEP / "main.parameters.json").read_text())
    main = parsed(MAIN)["parameters"]
    assert set(doc["parameters"]) <= set(main)
    assert doc["parameters"]["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert doc["parameters"]["location"]["value"] == "${AZURE_LOCATION}"
    required = {name for name, p in main.items() if p["default"] is None}
    assert required <= set(doc["parameters"])


def test_azure_yaml_deploys_the_one_codebase_to_both_function_apps() -> None:
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert doc["infra"]["provider"] == "bicep"
    assert (ROOT / doc["infra"]["path"] / f"{doc['infra']['module']}.bicep") == MAIN
    assert set(doc["services"]) == {"api", "operator"}
    for service in doc["services"].values():
        assert (service["host"], service["language"]) == ("function", "python")
        assert (ROOT / service["project"] / "function_app.py").is_file()
    # Each service deploys to the site whose azd-service-name tag names it: main.bicep gives
    # each app module its service's name.
    main = MAIN.read_text(encoding="utf-8")
    tagged = re.findall(r"azdServiceName:\s*'([^']+)'", main)
    assert sorted(tagged) == ["api", "operator"]


def test_ci_workflow_is_valid_yaml_that_builds_and_previews() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "bicep.yml").read_text())
    triggers = doc.get("on", doc.get(True))  # PyYAML reads a bare `on` key as True
    assert "pull_request" in triggers
    runs = "\n".join(step.get("run", "") for job in doc["jobs"].values() for step in job["steps"])
    assert "az bicep build " in runs
    assert "az bicep build-params" in runs
    assert "az deployment group what-if" in runs
    for job in doc["jobs"].values():
        assert job["runs-on"] and job["steps"]
