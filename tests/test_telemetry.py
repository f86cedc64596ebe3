"""configure_telemetry: nothing without a connection string, the distro for metrics only with
one, once per process, and never an outage. The last test runs the real distro in a process
of its own against a local ingestion endpoint and reads what it receives."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.telemetry import (
    DISABLED_INSTRUMENTATIONS,
    SDK_REQUEST_LOGGER,
    configure_telemetry,
    quiet_sdk_requests,
)
from tests.support.keys import SECRET
from tests.support.services import ROOT, Azurite

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={url}"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> None:
        self.calls.append(options)


def test_without_a_connection_string_nothing_is_configured() -> None:
    recorder = Recorder()
    assert configure_telemetry({}, configure=recorder, already_configured=lambda: False) is False
    assert (
        configure_telemetry(
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "},
            configure=recorder,
            already_configured=lambda: False,
        )
        is False
    )
    assert recorder.calls == []


def test_with_a_connection_string_the_distro_sends_metrics_and_nothing_the_host_sends() -> None:
    recorder = Recorder()
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k"}
    assert configure_telemetry(env, configure=recorder, already_configured=lambda: False)
    assert recorder.calls == [
        {
            "connection_string": "InstrumentationKey=k",
            "enable_live_metrics": False,
            "enable_performance_counters": False,
            "instrumentation_options": {
                name: {"enabled": False} for name in DISABLED_INSTRUMENTATIONS
            },
        }
    ]
    # The distro reads "no logs, no traces" from the environment only.
    assert env["OTEL_LOGS_EXPORTER"] == env["OTEL_TRACES_EXPORTER"] == "none"
    # As Microsoft's worker does: the Functions resource detector names the app.
    assert env["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] == "azure_functions"


def test_opentelemetry_settings_of_the_apps_own_are_kept() -> None:
    own = {
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_functions,otel",
        "OTEL_TRACES_EXPORTER": "otlp",
    }
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k", **own}
    assert configure_telemetry(env, configure=Recorder(), already_configured=lambda: False)
    assert env == {**env, **own, "OTEL_LOGS_EXPORTER": "none"}


def test_a_process_with_a_meter_provider_already_is_left_alone() -> None:
    recorder = Recorder()
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k"}
    assert not configure_telemetry(env, configure=recorder, already_configured=lambda: True)
    assert recorder.calls == []


def test_a_distro_that_fails_is_logged_and_the_app_starts_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**options: Any) -> None:
        raise ValueError("Invalid instrumentation key")

    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k"}
    with caplog.at_level(logging.ERROR, logger="dipguard.telemetry"):
        assert not configure_telemetry(env, configure=broken, already_configured=lambda: False)
    assert "metrics will not be exported" in caplog.text


def test_every_instrumentation_the_distro_would_switch_on_is_switched_off() -> None:
    from azure.monitor.opentelemetry._constants import _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES

    assert set(_ALL_SUPPORTED_INSTRUMENTED_LIBRARIES) <= set(DISABLED_INSTRUMENTATIONS)


class _Ingestion(BaseHTTPRequestHandler):
    received: list[Any]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        items = json.loads(body)
        self.received.extend(items)
        reply = json.dumps(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[Any]]]:
    received: list[Any] = []
    handler = type("Handler", (_Ingestion,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", received
    server.shutdown()
    server.server_close()


_WORKER = """
import json, logging
from opentelemetry import metrics, trace
from azure.core.settings import settings
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from shared.telemetry import configure_telemetry
from shared.dip.metrics import DipMetrics
from tests.support.keys import SECRET

configured = configure_telemetry()
provider = metrics.get_meter_provider()
dips = DipMetrics(provider)
dips.dip("cache", "ani", 3.0, None)
dips.dip("degraded", "customerId", 30.0, "budget")
dips.valve_decision(False, local=True)
provider.force_flush()
print(json.dumps({
    "configured": configured,
    "again": configure_telemetry(),
    "meter_provider": type(provider).__module__,
    "tracer_provider": type(trace.get_tracer_provider()).__name__,
    "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
    "azure_sdk_tracing": settings.tracing_implementation() is not None,
    "requests": RequestsInstrumentor().is_instrumented_by_opentelemetry,
    "urllib3": URLLib3Instrumentor().is_instrumented_by_opentelemetry,
}))
provider.shutdown()
"""


def test_the_real_distro_exports_the_dip_metrics_and_installs_nothing_else(
    ingestion: tuple[str, list[Any]], tmp_path: Path
) -> None:
    url, received = ingestion
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "PYTHON_APPLICATIONINSIGHTS_"))
    }
    env.update(
        APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION.format(url=url),
        # What the Functions platform sets, which the resource detector reads.
        FUNCTIONS_WORKER_RUNTIME="python",
        WEBSITE_SITE_NAME="func-dipguard-test",
        # No calls to Microsoft's own endpoints from a test; offline storage in tmp_path.
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",
        APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true",
        TMPDIR=str(tmp_path),
        PYTHONPATH=str(ROOT),
    )
    run = subprocess.run(
        [sys.executable, "-c", _WORKER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {
        "configured": True,
        "again": False,  # one provider per process
        "meter_provider": "opentelemetry.sdk.metrics._internal",
        "tracer_provider": "ProxyTracerProvider",  # no tracing installed
        "root_handlers": [],  # no second copy of the logs
        "azure_sdk_tracing": False,
        "requests": False,
        "urllib3": False,
    }

    metrics = [item for item in received if item["data"]["baseType"] == "MetricData"]
    assert {item["tags"]["ai.cloud.role"] for item in metrics} == {"func-dipguard-test"}
    rows = {
        (point["name"], tuple(sorted(item["data"]["baseData"].get("properties", {}).items()))): (
            point
        )
        for item in metrics
        for point in item["data"]["baseData"]["metrics"]
    }
    assert (
        rows[("dipguard.dips", (("key_kind", "ani"), ("latency_le", "5"), ("source", "cache")))][
            "value"
        ]
        == 1
    )
    assert rows[("dipguard.sheds", (("reason", "budget"),))]["value"] == 1
    assert (
        rows[("dipguard.valve.decisions", (("outcome", "shed"), ("valve", "local")))]["value"] == 1
    )
    duration = rows[("dipguard.dip.duration", (("source", "degraded"),))]
    assert (duration["value"], duration["count"], duration["min"], duration["max"]) == (
        30.0,
        1,
        30.0,
        30.0,
    )


NUMBER = "+13175550116"


def _leaks(records: list[logging.LogRecord]) -> list[str]:
    """Every record whose text holds the number in any form the SDK writes it."""
    forms = (NUMBER, NUMBER[1:], quote(NUMBER, safe=""), quote(f"p|{NUMBER}", safe=""))
    texts = [r.getMessage() + (r.exc_text or "") for r in records]
    return [t for t in texts if any(f in t for f in forms)]


async def _point_read(azurite: Azurite, table_name: str) -> None:
    async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
        await t.create_table()
        with pytest.raises(ResourceNotFoundError):
            await t.get_entity("b3f", f"p|{NUMBER}")
        await t.delete_table()


async def test_a_table_point_read_logs_no_lookup_key_once_the_sdk_is_quieted(
    azurite: Azurite, table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger(SDK_REQUEST_LOGGER)
    before = logger.level
    caplog.set_level(logging.INFO)  # the root at INFO, as Microsoft's worker sets it
    try:
        # The control: left alone, the SDK logs the point read's URL, RowKey and all.
        logger.setLevel(logging.NOTSET)
        await _point_read(azurite, table_name)
        assert _leaks(caplog.records)
        caplog.clear()
        quiet_sdk_requests()
        await _point_read(azurite, table_name + "q")
        assert _leaks(caplog.records) == []
    finally:
        logger.setLevel(before)


def test_the_app_quiets_the_sdk_requests_as_it_starts() -> None:
    code = f"import logging, function_app; print(logging.getLogger({SDK_REQUEST_LOGGER!r}).level)"
    env = {
        **os.environ,
        "CustomerStorage": "UseDevelopmentStorage=true",
        "LOOKUP_KEY_SECRET": SECRET,
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(logging.WARNING)
