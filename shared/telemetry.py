"""Metrics to Application Insights: the Azure Monitor OpenTelemetry distro, metrics only.

function_app.py calls ``configure_telemetry()`` once per worker process, before the Runtime
is built. With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (Bicep sets it in Azure), it
installs the distro's MeterProvider as OpenTelemetry's global one, which the Runtime's
metrics (shared.dip.metrics) record into; it exports every 60 s, pre-aggregated, straight
to the ingestion endpoint, so host.json's sampling never touches the metrics. Locally and in
tests, without the setting, it does nothing and the metrics go to OpenTelemetry's no-op
provider.

Only metrics, because the Functions host already sends everything else (host.json keeps
its default telemetryMode, and PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY stays false: see
bicep/modules/function-app.bicep):

* logging off (OTEL_LOGS_EXPORTER=none): the host forwards the worker's log records to
  Application Insights, sampled by host.json; a second, distro handler on the root logger
  would send each line again, unsampled (500 lines/s in a spike), which is what the
  sampling is there to stop.
* tracing (OTEL_TRACES_EXPORTER=none) and every instrumentation off: the host records a
  request per invocation (the 5xx alert queries them), and the instrumentations would wrap
  every Azure SDK and HTTP call of a dip in spans, CPU on the dip path for traces nobody
  samples together. They would also record HTTP client metrics of their own.
* live metrics and performance counters off: the host feeds Live Metrics and collects the
  instance's performance counters; the distro's would be second copies, and their request
  and exception rates read spans and logs that are off.

Ingestion uses Entra ID: the exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING
(``Authorization=AAD``, which Bicep sets for the host) and uses the managed identity, which
holds Monitoring Metrics Publisher on Application Insights (bicep/modules/app-access.bicep).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = [
    "DISABLED_INSTRUMENTATIONS",
    "SDK_REQUEST_LOGGER",
    "configure_telemetry",
    "quiet_sdk_requests",
]

# Every instrumentation the distro would switch on by default (its
# _FULLY_SUPPORTED_INSTRUMENTED_LIBRARIES); tests/test_telemetry.py fails when a new
# version of the distro adds one.
DISABLED_INSTRUMENTATIONS = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)

_DETECTORS = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
_EXPORTERS_OFF = ("OTEL_LOGS_EXPORTER", "OTEL_TRACES_EXPORTER")

log = logging.getLogger("dipguard.telemetry")

# The Azure SDK's HttpLoggingPolicy logs each request's method, URL and headers at INFO on
# this logger (azure-core, azure/core/pipeline/policies/_universal.py). A Table point read's
# URL carries its RowKey, the caller's lookup key. In Azure, Microsoft's Python worker sets
# the root logger to INFO and forwards every record to the host (azure-functions-runtime,
# workers/proxy_worker/dispatcher.py), so each such line would reach Application Insights;
# Azure/azure-sdk-for-python#19925 shows it in a function app.
SDK_REQUEST_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def quiet_sdk_requests() -> None:
    """Keep the SDK's per-request lines (URLs, which hold lookup keys) out of the logs the
    host forwards: its warnings and errors still pass."""
    logging.getLogger(SDK_REQUEST_LOGGER).setLevel(logging.WARNING)


def _distro() -> Callable[..., None]:
    from azure.monitor.opentelemetry import configure_azure_monitor

    return configure_azure_monitor


def _already_configured() -> bool:
    from opentelemetry.metrics import get_meter_provider
    from opentelemetry.sdk.metrics import MeterProvider

    return isinstance(get_meter_provider(), MeterProvider)


def configure_telemetry(
    env: MutableMapping[str, str] | None = None,
    *,
    configure: Callable[..., None] | None = None,
    already_configured: Callable[[], bool] = _already_configured,
) -> bool:
    """Send this worker process's metrics to Application Insights, once; True if it did.

    Does nothing without APPLICATIONINSIGHTS_CONNECTION_STRING, or when a MeterProvider is
    already installed (a second call, or Microsoft's worker configured the distro itself
    because PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY was turned on): OpenTelemetry
    allows one global provider per process. ``configure`` and ``already_configured`` are
    for tests, which must not install a global provider.
    """
    environ = os.environ if env is None else env
    connection_string = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection_string or already_configured():
        return False
    # As Microsoft's worker does when it configures the distro: the Functions resource
    # detector names the app (cloud_RoleName, the same as the host's) and its region.
    # Without it, the distro's default detectors find nothing on Functions and every
    # metric would come from "unknown_service".
    environ.setdefault(_DETECTORS, "azure_functions")
    # The distro takes "no logs" and "no traces" from these variables only: it overwrites
    # disable_logging and disable_tracing arguments with what they say (1.8: its
    # _default_disable_logging and _default_disable_tracing).
    for variable in _EXPORTERS_OFF:
        environ.setdefault(variable, "none")
    options: dict[str, Any] = {
        "connection_string": connection_string,
        "enable_live_metrics": False,
        "enable_performance_counters": False,
        "instrumentation_options": {name: {"enabled": False} for name in DISABLED_INSTRUMENTATIONS},
    }
    try:
        (configure or _distro())(**options)
    except Exception:
        # Metrics are not worth an outage: the dips answer without them, and say why.
        log.exception("configuring Azure Monitor failed; metrics will not be exported")
        return False
    return True
