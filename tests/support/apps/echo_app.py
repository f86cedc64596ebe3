"""A FunctionApp that shows what crossed the worker protocol: for the dev host's tests.

``/api/echo/{item}/{n?}`` answers with what the function received (method, route
parameters, headers, query, body) and with the status and headers the caller asked for, so
a test can check both directions. A timer and a warmup function record their invocations,
and ``/api/seen`` reports them.
"""

import base64
import json

import azure.functions as func
from azure.functions.warmup import WarmUpContext

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_seen: dict[str, list[object]] = {"timer": [], "warmup": []}


@app.route(route="echo/{item}/{n?}", methods=["GET", "POST", "PUT", "DELETE"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    received = {
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "headers": dict(req.headers),
        "query": dict(req.params),
        "body": base64.b64encode(req.get_body()).decode(),
    }
    status = int(req.headers.get("x-answer-status", "200"))
    extra = json.loads(req.headers.get("x-answer-headers", "{}"))
    return func.HttpResponse(
        json.dumps(received), status_code=status, headers=extra, mimetype="application/json"
    )


@app.route(route="text", methods=["GET"])
def text(req: func.HttpRequest) -> str:
    return "plain words"


@app.timer_trigger(schedule="0 0 3 * * *", arg_name="timer", run_on_startup=False)
def nightly(timer: func.TimerRequest) -> None:
    _seen["timer"].append({"pastDue": timer.past_due})


@app.warm_up_trigger("warmup")
async def warmup(warmup: WarmUpContext) -> None:
    _seen["warmup"].append(type(warmup).__name__)


@app.route(route="seen", methods=["GET"])
def seen(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(_seen), mimetype="application/json")
