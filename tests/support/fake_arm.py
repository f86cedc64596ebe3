"""A local HTTPS stand-in for Azure Resource Manager, just enough for azure-mgmt-web.

It holds one site config and one Elastic Premium plan, records every request, and can be
told to answer the next matching requests with 429 (+ Retry-After), 500, 403, or to hang.
HTTPS with a trustme CA, because azure-core refuses to send a bearer token over http.

Like ARM, it refuses always-ready above the plan's maximum burst, and raising always-ready
raises the plan minimum (sku.capacity) while lowering it leaves the minimum where it was.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import select
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from azure.core.credentials import AccessToken

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
# The bounds Azure's published types give the site config's instance counts
# (Microsoft.Web/sites/config, API 2024-11-01; tests/bicep/types/ holds the copy).
SITE_CONFIG_BOUNDS = {"minimumElasticInstanceCount": 20, "preWarmedInstanceCount": 10}

_SITE = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Web/"
    r"sites/([^/]+)(/config/web)?$",
    re.IGNORECASE,
)
_PLAN = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Web/"
    r"serverfarms/([^/]+)$",
    re.IGNORECASE,
)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class Fault:
    status: int | None  # None: hang without answering
    method: str | None
    path_contains: str | None
    times: int
    retry_after: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
        )


@dataclass
class ArmState:
    always_ready: int = 1
    pre_warmed: int = 1
    max_burst: int = 20
    capacity: int = 1
    extra_site_config: dict[str, Any] = field(
        default_factory=lambda: {
            "numberOfWorkers": 1,
            "linuxFxVersion": "Python|3.13",
            "functionAppScaleLimit": 0,
        }
    )


class FakeArm:
    def __init__(
        self,
        tmp_dir: Path,
        *,
        resource_group: str = "rg-dip",
        site: str = "dip-app",
        plan: str = "dip-plan",
        plan_resource_group: str | None = None,
        hang_limit: float = 5.0,
    ) -> None:
        self.resource_group = resource_group
        self.site = site
        self.plan = plan
        self.plan_resource_group = plan_resource_group or resource_group
        self.state = ArmState()
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        # A hung request is let go after this long at most, or when the server stops.
        self.hang_limit = hang_limit
        self._release = threading.Event()
        self._lock = threading.Lock()

        ca, cert = _authority()
        self.ca_path = str(tmp_dir / "fake-arm-ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeArm:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        with self._lock:
            self.faults.append(Fault(status, method, path_contains, times, retry_after))

    def hang(
        self, *, method: str | None = None, path_contains: str | None = None, times: int = 1
    ) -> None:
        with self._lock:
            self.faults.append(Fault(None, method, path_contains, times))

    def calls(self, method: str, path_suffix: str = "") -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method and r.path.lower().endswith(path_suffix.lower())
            ]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def site_id(self) -> str:
        return (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Web/sites/{self.site}"
        )

    @property
    def plan_id(self) -> str:
        return (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{self.plan_resource_group}"
            f"/providers/Microsoft.Web/serverfarms/{self.plan}"
        )

    # ------------------------------------------------------------------ resources

    def _site_config(self) -> dict[str, Any]:
        s = self.state
        return {
            "id": f"{self.site_id}/config/web",
            "name": "web",
            "type": "Microsoft.Web/sites/config",
            "location": "East US",
            "properties": {
                **s.extra_site_config,
                "minimumElasticInstanceCount": s.always_ready,
                "preWarmedInstanceCount": s.pre_warmed,
            },
        }

    def _site(self) -> dict[str, Any]:
        return {
            "id": self.site_id,
            "name": self.site,
            "type": "Microsoft.Web/sites",
            "location": "East US",
            "kind": "functionapp,linux",
            "properties": {"serverFarmId": self.plan_id, "state": "Running"},
        }

    def _plan(self) -> dict[str, Any]:
        s = self.state
        return {
            "id": self.plan_id,
            "name": self.plan,
            "type": "Microsoft.Web/serverfarms",
            "location": "East US",
            "kind": "elastic",
            "sku": {
                "name": "EP1",
                "tier": "ElasticPremium",
                "size": "EP1",
                "family": "EP",
                "capacity": s.capacity,
            },
            "properties": {
                "maximumElasticWorkerCount": s.max_burst,
                "reserved": True,
                "provisioningState": "Succeeded",
                "status": "Ready",
            },
        }

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Apply one request to the state; (status, JSON body). Runs under the lock."""
        site = _SITE.match(path)
        plan = _PLAN.match(path)
        s = self.state
        if (
            site
            and site.group(3).lower() == self.site.lower()
            and site.group(2).lower() == self.resource_group.lower()
        ):
            if site.group(4):  # config/web
                if method == "GET":
                    return 200, self._site_config()
                if method == "PATCH":
                    props = (body or {}).get("properties", {})
                    # ARM validates the bounds of Azure's published types for sites/config
                    # (API 2024-11-01): minimumElasticInstanceCount 0-20, preWarmedInstanceCount
                    # 0-10. A value outside them is a 400 and changes nothing.
                    for key, hi in SITE_CONFIG_BOUNDS.items():
                        if key in props and not 0 <= props[key] <= hi:
                            return 400, _error(
                                "BadRequest", f"{key} {props[key]} is outside 0 to {hi}"
                            )
                    new_ar = props.get("minimumElasticInstanceCount", s.always_ready)
                    if new_ar > s.max_burst:
                        return 400, _error(
                            "BadRequest",
                            f"minimumElasticInstanceCount {new_ar} "
                            f"exceeds the plan maximum {s.max_burst}",
                        )
                    for key, value in props.items():
                        if key == "minimumElasticInstanceCount":
                            s.always_ready = value
                            s.capacity = max(s.capacity, value)
                        elif key == "preWarmedInstanceCount":
                            s.pre_warmed = value
                        else:
                            s.extra_site_config[key] = value
                    return 200, self._site_config()
            elif method == "GET":
                return 200, self._site()
        if (
            plan
            and plan.group(3).lower() == self.plan.lower()
            and plan.group(2).lower() == self.plan_resource_group.lower()
        ):
            if method == "GET":
                return 200, self._plan()
            if method == "PATCH":
                props = (body or {}).get("properties", {})
                if "maximumElasticWorkerCount" in props:
                    s.max_burst = props["maximumElasticWorkerCount"]
                return 200, self._plan()
            if method == "PUT":
                sku = (body or {}).get("sku") or {}
                props = (body or {}).get("properties") or {}
                if "capacity" in sku:
                    s.capacity = sku["capacity"]
                if "maximumElasticWorkerCount" in props:
                    s.max_burst = props["maximumElasticWorkerCount"]
                return 200, self._plan()
        return 404, _error("ResourceNotFound", f"{method} {path} is not known to the fake ARM")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                auth = self.headers.get("Authorization")
                with fake._lock:
                    fake.requests.append(
                        Recorded(method, parts.path, parse_qs(parts.query), body, auth)
                    )
                    fault = next((f for f in fake.faults if f.matches(method, parts.path)), None)
                    if fault is not None:
                        fault.times -= 1
                if fault is not None and fault.status is None:
                    self._hang()
                    return
                headers: dict[str, str] = {}
                if fault is not None:
                    assert fault.status is not None
                    status, payload = (
                        fault.status,
                        _error(f"Injected{fault.status}", "injected by the test"),
                    )
                    if fault.retry_after is not None:
                        headers["Retry-After"] = fault.retry_after
                elif not (auth or "").startswith("Bearer "):
                    status, payload = 401, _error("AuthenticationFailed", "no bearer token")
                elif "api-version" not in parse_qs(parts.query):
                    status, payload = 400, _error("MissingApiVersionParameter", "no api-version")
                else:
                    with fake._lock:
                        status, payload = fake.handle(method, parts.path, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    # The client gave up (its own timeout); nothing to tell it.
                    self.close_connection = True

            def _hang(self) -> None:
                """Answer nothing until the client gives up, the limit passes, or stop()."""
                deadline = time.monotonic() + fake.hang_limit
                while time.monotonic() < deadline and not fake._release.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.02)
                    if readable:
                        # The client closed (TLS close_notify or FIN): end our side too, so
                        # its TLS shutdown completes instead of lingering past the test.
                        with contextlib.suppress(OSError, ssl.SSLError):
                            self.connection.recv(1)
                        break
                self.close_connection = True

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler


class StubCredential:
    """An async credential that hands out a fixed token and remembers the scopes asked."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("test-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StubCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


@functools.cache
def _authority() -> tuple[trustme.CA, trustme.LeafCert]:
    # One CA per test session: minting keys is the slowest part of starting a fake.
    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1", "localhost")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
