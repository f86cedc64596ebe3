"""A small stand-in for ``func start``: HTTP in front, Microsoft's Python worker behind.

Azure Functions Core Tools is a .NET host that downloads its binaries at install time; this
host needs only PyPI. It does the host's part of the work and leaves the worker's part to
the worker library (devhost/worker.py): the routes, methods and auth levels come from the
bindings the worker indexed, each request becomes an invocation message, and the worker's
answer becomes the response. It also serves the host's admin endpoint for running non-HTTP
functions, and invokes warmup functions once at start, as Azure does on a new instance. It
is a development tool: .funcignore keeps it out of the deployed package.

Like Core Tools, it does not check keys by default. With ``--enforce-keys`` it checks
``x-functions-key`` (or ``?code=``) against DEVHOST_FUNCTION_KEY / DEVHOST_MASTER_KEY the
way Azure does: anonymous needs nothing, function takes either key, admin only the master.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost.worker import (
    FunctionSpec,
    Worker,
    empty_trigger,
    http_answer,
    http_trigger,
    timer_trigger,
)
from shared.settings import with_local_settings

__all__ = ["DevHost", "build_web_app", "load_local_settings", "start_host"]

log = logging.getLogger("devhost")

ROOT = Path(__file__).resolve().parents[1]
_ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def load_local_settings(path: Path = ROOT / "local.settings.json") -> dict[str, str]:
    """Copy local.settings.json Values into the environment without overriding what is set."""
    applied = {k: v for k, v in with_local_settings(str(path)).items() if k not in os.environ}
    os.environ.update(applied)
    return applied


def _route_prefix(root: Path) -> str:
    try:
        host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "api"
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}")


def aiohttp_paths(prefix: str, template: str) -> list[str]:
    """Functions route templates to aiohttp paths. ``{id?}`` (optional) becomes two paths."""
    base = "/" + "/".join(p for p in (prefix, template.strip("/")) if p)
    optional = [m.group(1) for m in _PARAM.finditer(base) if m.group(2)]
    full = _PARAM.sub(lambda m: "{" + m.group(1) + "}", base)
    paths = [full]
    for name in optional:
        # An optional parameter is only ever the last segment in practice.
        paths.append(full.replace("/{" + name + "}", ""))
    return paths


def _joined(values: Any) -> dict[str, str]:
    """A multi-dict as the host passes it on: repeated names joined with commas."""
    out: dict[str, str] = {}
    for name in values:
        if name not in out:
            out[name] = ",".join(values.getall(name))
    return out


class DevHost:
    def __init__(
        self,
        worker: Worker,
        *,
        enforce_keys: bool = False,
        function_key: str | None = None,
        master_key: str | None = None,
        route_prefix: str | None = None,
    ) -> None:
        self.worker = worker
        self.enforce_keys = enforce_keys
        self.function_key = function_key
        self.master_key = master_key
        self.route_prefix = _route_prefix(worker.app_dir) if route_prefix is None else route_prefix
        self.functions = {f.name: f for f in worker.functions}

    # --- keys ---------------------------------------------------------------------------

    def _allowed(self, request: web.Request, level: str) -> bool:
        if not self.enforce_keys or level == "anonymous":
            return True
        presented = request.headers.get("x-functions-key") or request.query.get("code")
        if presented is None:
            return False
        keys = (
            [self.master_key]
            if level in {"admin", "system"}
            else [self.function_key, self.master_key]
        )
        return any(k is not None and hmac.compare_digest(presented, k) for k in keys)

    # --- invocation -----------------------------------------------------------------------

    async def _invoke(self, function: FunctionSpec, trigger: Any) -> Any | None:
        """The worker's response, or None after logging why the function failed."""
        response = await self.worker.invoke(function, trigger)
        if response.result.status != response.result.Success:
            exc = response.result.exception
            log.error("function %s failed: %s\n%s", function.name, exc.message, exc.stack_trace)
            return None
        return response

    def _http_handler(self, function: FunctionSpec) -> Any:
        trigger = function.trigger
        methods = {str(m).upper() for m in trigger.get("methods") or _ALL_METHODS}
        level = str(trigger.get("authLevel", "function")).lower()

        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method.upper() not in methods:
                return web.Response(status=405)
            if not self._allowed(request, level):
                return web.Response(status=401)
            data = http_trigger(
                request.method,
                str(request.url),
                _joined(request.headers),
                _joined(request.query),
                dict(request.match_info),
                await request.read(),
            )
            response = await self._invoke(function, data)
            if response is None:
                # The Functions host answers a failed invocation with a bare 500.
                return web.Response(status=500)
            answer = http_answer(response, function)
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

        return handle

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        """POST /admin/functions/{name}: run a non-HTTP function now, as Azure's host does.

        A timer function gets a TimerInfo; ``{"input": "<json>"}`` in the body replaces its
        fields (``{"IsPastDue": true}``, say). Azure answers 202 whatever the function does;
        this host answers 500 with the worker's message when the function fails, because a
        developer running it by hand wants to know.
        """
        name = request.match_info["name"]
        if not self._allowed(request, "admin"):
            return web.Response(status=401)
        function = self.functions.get(name)
        if function is None or function.trigger_type == "httpTrigger":
            return web.json_response({"error": f"no non-HTTP function named {name}"}, status=404)
        info: dict[str, Any] = {}
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
                given = body.get("input") if isinstance(body, dict) else None
                info = json.loads(given) if isinstance(given, str) and given.strip() else {}
                if not isinstance(info, dict):
                    raise ValueError("input must be a JSON object")
            except ValueError as exc:
                return web.json_response({"error": f"bad admin request body: {exc}"}, status=400)
        trigger = (
            timer_trigger(info=info) if function.trigger_type == "timerTrigger" else empty_trigger()
        )
        response = await self.worker.invoke(function, trigger)
        if response.result.status != response.result.Success:
            message = response.result.exception.message
            log.error("function %s failed: %s", name, message)
            return web.json_response({"error": f"{name} failed: {message}"}, status=500)
        return web.Response(status=202)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running", "functions": sorted(self.functions)})

    async def warm_up(self) -> None:
        """Invoke every warmup function once, as Azure does before a new instance serves."""
        for function in self.functions.values():
            if function.trigger_type == "warmupTrigger":
                await self._invoke(function, empty_trigger())

    def build(self) -> web.Application:
        web_app = web.Application(client_max_size=1024 * 1024)
        for function in self.functions.values():
            if function.trigger_type != "httpTrigger":
                continue
            handler = self._http_handler(function)
            route = str(function.trigger.get("route") or function.name)
            for path in aiohttp_paths(self.route_prefix, route):
                web_app.router.add_route("*", path, handler)
        web_app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        web_app.router.add_get("/admin/host/status", self._status)
        return web_app


async def start_host(script: Path, *, enforce_keys: bool = False) -> DevHost:
    """Start the worker on ``script``, warm it up, and wrap it; WorkerRefused if it refuses."""
    worker = Worker(script)
    await worker.start()
    host = DevHost(
        worker,
        enforce_keys=enforce_keys,
        function_key=os.environ.get("DEVHOST_FUNCTION_KEY"),
        master_key=os.environ.get("DEVHOST_MASTER_KEY"),
    )
    await host.warm_up()
    return host


async def build_web_app(script: Path, *, enforce_keys: bool = False) -> web.Application:
    host = await start_host(script, enforce_keys=enforce_keys)
    web_app = host.build()

    async def stop(_: web.Application) -> None:
        host.worker.stop()

    web_app.on_cleanup.append(stop)
    return web_app
