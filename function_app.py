"""dipguard's trigger table. Each trigger parses, calls one function in shared/, and formats."""

from __future__ import annotations

import json
import logging

import azure.functions as func

# azure-functions 2.x lists WarmUpContext in its __all__ but does not import it at the top
# level, so ``func.WarmUpContext`` fails; the worker checks the warmup parameter against
# this class.
from azure.functions.warmup import WarmUpContext

from app.runtime import WARM_BUDGET_SECONDS, runtime
from shared.dip.contract import parse_dip_request
from shared.dip.health import health_report
from shared.errors import CallerError
from shared.http import ApiResponse
from shared.scale.tick import ScaleTickFailed, check_schedule, run_tick
from shared.telemetry import configure_telemetry, quiet_sdk_requests

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Metrics to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set (in
# Azure), once per worker process and before the Runtime, whose metrics record into the
# provider this installs. Nothing locally or in tests.
configure_telemetry()
# Before any client exists: no SDK request line, whose URL carries a lookup key, is logged.
quiet_sdk_requests()

# Settings are parsed when the host loads this file, so a bad value stops start-up with
# an error naming the setting instead of failing the first dip of a spike.
runtime()


def http_response(answer: ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(answer.body, separators=(",", ":")),
        status_code=answer.status,
        mimetype="application/json",
    )


# --- the data dip ---


# No runtime key: in Azure, App Service Authentication admits only API Management's managed
# identity to this route (bicep/modules/function-app.bicep), and the network rules only its
# gateway, so no key has to be written to the runtime at deployment.
@app.function_name("ivr_lookup")
@app.route(route="lookup", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def ivr_lookup(req: func.HttpRequest) -> func.HttpResponse:
    try:
        request = parse_dip_request(req.get_body(), req.headers.get("content-type"))
    except CallerError as exc:
        return http_response(exc.response())
    outcome = await runtime().dips.answer(request)
    return http_response(ApiResponse(200, outcome.answer.body()))


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    rt = runtime()
    report = await health_report(rt.clients, rt.redis_breaker, rt.dips)
    return http_response(ApiResponse(200, {**report, **await rt.read_model.status()}))


@app.warm_up_trigger("warmup")
async def warmup(warmup: WarmUpContext) -> None:
    rt = runtime()
    status = {**await rt.clients.probe(timeout=2.0), **await rt.read_model.status(timeout=2.0)}
    logging.getLogger("dipguard.warmup").info("warmup %s", json.dumps(status))


@app.function_name("cache_warm")
@app.timer_trigger(
    schedule="%WARM_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def cache_warm(timer: func.TimerRequest) -> None:
    # The warm logs its own cache_warm line; one that stops early resumes on the next run.
    await runtime().warm().run(budget_s=WARM_BUDGET_SECONDS)


# --- the scale schedule and the operators' surge switch ---

# A bad SCALE_SCHEDULE is logged at start-up, naming the field; it must not stop the data dip,
# and the timer keeps the current state until it is fixed.
check_schedule(runtime().settings.scale)


@app.function_name("scale_schedule")
@app.timer_trigger(
    schedule="%SCALE_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def scale_schedule(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.getLogger("dipguard.scale").warning("scale_schedule is running late")
    rt = runtime()
    report = await run_tick(
        rt.settings.scale, surge_table=rt.surge_table, gateway_factory=rt.gateway_factory
    )
    if report.broken:
        raise ScaleTickFailed(report)


@app.function_name("surge")
@app.route(route="surge/{id?}", methods=["GET", "POST", "DELETE"], auth_level=func.AuthLevel.ADMIN)
async def surge(req: func.HttpRequest) -> func.HttpResponse:
    answer = await runtime().surge_api.handle(
        req.method, req.route_params.get("id"), req.get_body()
    )
    return http_response(answer)
