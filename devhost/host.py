"""A small stand-in for ``func start``: serves a v2-model FunctionApp on localhost.

Azure Functions Core Tools cannot be installed where dipguard is built and tested (its
installer downloads a binary from a host that is not reachable), so this host reads the
app's own function metadata (``app.get_functions()``) and serves the same routes, methods
and auth levels, plus the host's admin endpoint for running non-HTTP functions. It is a
development tool: .funcignore keeps it out of the deployed package.

Like Core Tools, it does not check keys by default. With ``--enforce-keys`` it checks
``x-functions-key`` (or ``?code=``) against DEVHOST_FUNCTION_KEY / DEVHOST_MASTER_KEY the way
Azure does: anonymous needs nothing, function takes either key, admin only the master key.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import inspect
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web

from shared.settings import with_local_settings

__all__ = ["DevHost", "HttpFunction", "build_web_app", "load_local_settings"]

log = logging.getLogger("devhost")

ROOT = Path(__file__).resolve().parents[1]


def load_local_settings(path: Path = ROOT / "local.settings.json") -> dict[str, str]:
    """Copy local.settings.json Values into the environment without overriding what is set."""
    applied = {k: v for k, v in with_local_settings(str(path)).items() if k not in os.environ}
    os.environ.update(applied)
    return applied


def _route_prefix(root: Path = ROOT) -> str:
    try:
        host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "api"
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}")


def _aiohttp_paths(prefix: str, template: str) -> list[str]:
    """Functions route templates to aiohttp paths. ``{id?}`` (optional) becomes two paths."""
    base = "/" + "/".join(p for p in (prefix, template.strip("/")) if p)
    optional = [m.group(1) for m in _PARAM.finditer(base) if m.group(2)]
    full = _PARAM.sub(lambda m: "{" + m.group(1) + "}", base)
    paths = [full]
    for name in optional:
        # An optional parameter is only ever the last segment in practice.
        paths.append(full.replace("/{" + name + "}", ""))
    return paths


@dataclass(frozen=True)
class HttpFunction:
    name: str
    arg_name: str
    methods: tuple[str, ...]
    auth_level: str
    route: str
    handler: Any


@dataclass(frozen=True)
class OtherFunction:
    name: str
    arg_name: str
    trigger_type: str
    handler: Any


class _DevTimerRequest(func.TimerRequest):
    def __init__(self, past_due: bool = False) -> None:
        self._past_due = past_due

    @property
    def past_due(self) -> bool:
        return self._past_due


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


_FUNCTIONS: dict[int, list[Any]] = {}


def _functions_of(app: func.FunctionApp) -> list[Any]:
    # get_functions() validates names against those it has already built, so a second call
    # on the same app raises "not a unique function name". Build once per app object.
    key = id(app)
    if key not in _FUNCTIONS:
        _FUNCTIONS[key] = list(app.get_functions())
    return _FUNCTIONS[key]


class DevHost:
    def __init__(self, app: func.FunctionApp, *, enforce_keys: bool = False,
                 function_key: str | None = None, master_key: str | None = None,
                 route_prefix: str | None = None) -> None:
        self.app = app
        self.enforce_keys = enforce_keys
        self.function_key = function_key
        self.master_key = master_key
        self.route_prefix = _route_prefix() if route_prefix is None else route_prefix
        self.http: list[HttpFunction] = []
        self.other: dict[str, OtherFunction] = {}
        for fn in _functions_of(app):
            trigger = fn.get_trigger()
            spec = trigger.get_dict_repr()
            name = fn.get_function_name()
            if spec["type"] == "httpTrigger":
                methods = tuple(_enum_value(m).upper() for m in spec.get("methods") or
                                ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))
                auth = _enum_value(spec.get("authLevel", "function")).lower()
                self.http.append(HttpFunction(name, spec["name"], methods, auth,
                                              spec.get("route") or name, fn.get_user_function()))
            else:
                self.other[name] = OtherFunction(name, spec["name"], spec["type"],
                                                 fn.get_user_function())

    # --- keys ---------------------------------------------------------------------------

    def _presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-functions-key") or request.query.get("code")

    def _allowed(self, request: web.Request, level: str) -> bool:
        if not self.enforce_keys or level == "anonymous":
            return True
        presented = self._presented_key(request)
        if presented is None:
            return False
        keys = [self.master_key] if level in {"admin", "system"} else [self.function_key,
                                                                       self.master_key]
        return any(k is not None and hmac.compare_digest(presented, k) for k in keys)

    # --- invocation -----------------------------------------------------------------------

    @staticmethod
    async def _call(handler: Any, kwargs: Mapping[str, Any]) -> Any:
        if inspect.iscoroutinefunction(handler):
            return await handler(**kwargs)
        # The Python worker runs sync functions on a thread pool; so does this host.
        return await asyncio.to_thread(handler, **kwargs)

    def _http_handler(self, fn: HttpFunction) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method.upper() not in fn.methods:
                return web.Response(status=405)
            if not self._allowed(request, fn.auth_level):
                return web.Response(status=401)
            body = await request.read()
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query),
                route_params=dict(request.match_info),
                body=body,
            )
            try:
                result = await self._call(fn.handler, {fn.arg_name: req})
            except Exception:
                # The real host turns an unhandled exception into a bare 500, so does this.
                log.exception("function %s raised", fn.name)
                return web.Response(status=500)
            return self._to_aiohttp(result)

        return handle

    @staticmethod
    def _to_aiohttp(result: Any) -> web.Response:
        if result is None:
            return web.Response(status=204)
        if isinstance(result, str):
            return web.Response(status=200, text=result)
        response: func.HttpResponse = result
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        if response.mimetype and "content-type" not in {k.lower() for k in headers}:
            content_type = response.mimetype
            if response.charset and content_type.startswith(("text/", "application/json")):
                content_type += f"; charset={response.charset}"
            headers["Content-Type"] = content_type
        return web.Response(status=response.status_code, body=response.get_body(),
                            headers=headers)

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self._allowed(request, "admin"):
            return web.Response(status=401)
        fn = self.other.get(name)
        if fn is None:
            return web.json_response({"error": f"no non-HTTP function named {name}"},
                                     status=404)
        arg: Any
        if fn.trigger_type == "timerTrigger":
            arg = _DevTimerRequest()
        else:
            arg = None
        try:
            await self._call(fn.handler, {fn.arg_name: arg})
        except Exception:
            log.exception("function %s raised", fn.name)
            return web.json_response({"error": f"{name} failed; see the host log"}, status=500)
        # The Functions host answers 202 Accepted to an admin invocation.
        return web.Response(status=202)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "state": "Running",
            "functions": sorted([f.name for f in self.http] + list(self.other)),
        })

    def build(self) -> web.Application:
        web_app = web.Application(client_max_size=1024 * 1024)
        for fn in self.http:
            handler = self._http_handler(fn)
            for path in _aiohttp_paths(self.route_prefix, fn.route):
                web_app.router.add_route("*", path, handler)
        web_app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        web_app.router.add_get("/admin/host/status", self._status)
        return web_app


def build_web_app(module: str = "function_app", *, enforce_keys: bool = False) -> web.Application:
    """Import the app module (after local settings are loaded) and wrap it."""
    app = importlib.import_module(module).app
    return DevHost(app, enforce_keys=enforce_keys,
                   function_key=os.environ.get("DEVHOST_FUNCTION_KEY"),
                   master_key=os.environ.get("DEVHOST_MASTER_KEY")).build()
