"""dipguard's triggers, as blueprints: each trigger parses, calls one function in shared/,
and formats.

One codebase serves two function apps, split by privilege (Microsoft's Functions security
guidance: functions that need more privilege go in a separate function app). function_app.py
registers the blueprints DIPGUARD_FUNCTIONS names:

- ``lookup``: HEALTH + LOOKUP, the lookup app behind API Management, whose identity reads
  the customer table and Redis and holds nothing on the control plane;
- ``operator``: HEALTH + OPERATOR, the operator app, whose identity holds the ARM roles on
  the lookup app and the plan;
- ``all``: every blueprint in one host, as the dev host serves them locally.

Each app has its own ``health`` at ``/api/health``.
"""

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

__all__ = ["BLUEPRINTS", "HEALTH", "LOOKUP", "OPERATOR", "http_response"]

# azure-functions leaves Blueprint's constructor unannotated.
HEALTH = func.Blueprint()  # type: ignore[no-untyped-call]
LOOKUP = func.Blueprint()  # type: ignore[no-untyped-call]
OPERATOR = func.Blueprint()  # type: ignore[no-untyped-call]

# What each value of DIPGUARD_FUNCTIONS registers.
BLUEPRINTS: dict[str, tuple[func.Blueprint, ...]] = {
    "lookup": (HEALTH, LOOKUP),
    "operator": (HEALTH, OPERATOR),
    "all": (HEALTH, LOOKUP, OPERATOR),
}


def http_response(answer: ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(answer.body, separators=(",", ":")),
        status_code=answer.status,
        mimetype="application/json",
    )


# --- both apps ---


@HEALTH.function_name("health")
@HEALTH.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    rt = runtime()
    report = await health_report(rt.clients, rt.redis_breaker, rt.dips)
    return http_response(ApiResponse(200, {**report, **await rt.read_model.status()}))


# --- the lookup app: the data dip ---


# No runtime key: in Azure, App Service Authentication admits only API Management's managed
# identity to this route (bicep/modules/function-app.bicep), and the network rules only its
# gateway, so no key has to be written to the runtime at deployment.
@LOOKUP.function_name("ivr_lookup")
@LOOKUP.route(route="lookup", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def ivr_lookup(req: func.HttpRequest) -> func.HttpResponse:
    try:
        request = parse_dip_request(req.get_body(), req.headers.get("content-type"))
    except CallerError as exc:
        return http_response(exc.response())
    outcome = await runtime().dips.answer(request)
    return http_response(ApiResponse(200, outcome.answer.body()))


@LOOKUP.warm_up_trigger("warmup")
async def warmup(warmup: WarmUpContext) -> None:
    rt = runtime()
    status = {**await rt.clients.probe(timeout=2.0), **await rt.read_model.status(timeout=2.0)}
    logging.getLogger("dipguard.warmup").info("warmup %s", json.dumps(status))


@LOOKUP.function_name("cache_warm")
@LOOKUP.timer_trigger(
    schedule="%WARM_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def cache_warm(timer: func.TimerRequest) -> None:
    # The warm logs its own cache_warm line; one that stops early resumes on the next run.
    await runtime().warm().run(budget_s=WARM_BUDGET_SECONDS)


# --- the operator app: the scale schedule and the operators' surge switch ---


@OPERATOR.function_name("scale_schedule")
@OPERATOR.timer_trigger(
    schedule="%SCALE_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def scale_schedule(timer: func.TimerRequest) -> None:
    # Imported here, not at the top: the lookup app never loads the operator's modules.
    from shared.scale.tick import ScaleTickFailed, run_tick

    if timer.past_due:
        logging.getLogger("dipguard.scale").warning("scale_schedule is running late")
    rt = runtime()
    report = await run_tick(
        rt.settings.scale, surge_table=rt.surge_table, gateway_factory=rt.gateway_factory
    )
    if report.broken:
        raise ScaleTickFailed(report)


# Anonymous to the runtime, so no host key opens it: App Service Authentication on the
# operator app admits only signed-in Entra identities, and the surge switch itself
# answers 401 or 403 to any but an operator holding Surge.Operate (shared.scale.principal).
@OPERATOR.function_name("surge")
@OPERATOR.route(
    route="surge/{id?}", methods=["GET", "POST", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS
)
async def surge(req: func.HttpRequest) -> func.HttpResponse:
    answer = await runtime().surge_api.handle(
        req.method, req.route_params.get("id"), req.get_body(), headers=dict(req.headers)
    )
    return http_response(answer)
