"""Microsoft's Python worker, driven the way the Functions host drives it.

On Python 3.13 the worker is a library, ``azure-functions-runtime``, behind a thin gRPC
proxy. Its entry points take the host's protocol messages: worker init (which imports and
indexes ``function_app.py``), function metadata, function load, and one invocation request
per call. ``Worker`` sends those same messages in-process, so the app is indexed, its
bindings converted and its functions called by Microsoft's code, exactly as in Azure. A
function the worker refuses fails here at start-up, with the worker's own message.

Every message crosses as bytes (serialized, then parsed again), as it would over gRPC, so
nothing that only a Python object could carry gets through.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.rpc import protos

__all__ = ["FunctionSpec", "HttpAnswer", "Worker", "WorkerRefused", "http_answer"]

# A worker answers init with the capabilities it wants; the host shapes every HTTP
# invocation by them. This host speaks only the shape Microsoft's worker asks for: the
# body as raw bytes, in the body field alone.
_REQUIRED_CAPABILITIES = ("RawHttpBodyBytes", "RpcHttpBodyOnly")
_DEFAULT_SCRIPT = "function_app.py"


class WorkerRefused(RuntimeError):
    """The worker could not initialise, index or load the app. The message is its own."""


@dataclass(frozen=True)
class _Request:
    """The envelope the worker library's entry points take (the proxy worker's shape)."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its id and its bindings, as the worker reported them."""

    function_id: str
    name: str
    bindings: tuple[dict[str, Any], ...]

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if str(b.get("type", "")).endswith("Trigger"))

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _round_trip(message: Any) -> Any:
    """The message as the other side of a gRPC stream would see it."""
    return type(message).FromString(message.SerializeToString())


def _check(result: Any, what: str) -> None:
    pb = protos()
    if result.status != pb.StatusResult.Success:
        raise WorkerRefused(f"{what}: {result.exception.message or 'failed without a message'}")


class Worker:
    """One worker library per process: it keeps the indexed app in module-level state."""

    def __init__(self, script: Path, *, host: str = "127.0.0.1") -> None:
        self.script = script.resolve()
        self.app_dir = self.script.parent
        self.host = host
        self.functions: list[FunctionSpec] = []
        self.capabilities: dict[str, str] = {}
        self._worker: Any = None

    async def start(self) -> list[FunctionSpec]:
        """Init (which indexes the app), read the metadata, load every function."""
        import azure_functions_runtime as worker

        pb = protos()
        self._worker = worker
        # The worker imports the script by its stem, from its folder, as the Functions
        # host's worker does from /home/site/wwwroot.
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))
        if self.script.name != _DEFAULT_SCRIPT:
            os.environ["PYTHON_SCRIPT_FILE_NAME"] = self.script.name
        worker.start_threadpool_executor()

        init = await worker.worker_init_request(
            _Request(
                "WorkerInitRequest",
                _round_trip(
                    pb.StreamingMessage(
                        request_id=uuid.uuid4().hex,
                        worker_init_request=pb.WorkerInitRequest(
                            host_version="4 (dipguard devhost)",
                            function_app_directory=str(self.app_dir),
                        ),
                    )
                ),
                {"protos": pb, "host": self.host},
            )
        )
        init = _round_trip(init)
        _check(init.result, f"the worker refused {self.script.name}")
        self.capabilities = dict(init.capabilities)
        missing = [c for c in _REQUIRED_CAPABILITIES if c not in self.capabilities]
        if missing:
            raise WorkerRefused(
                f"the worker does not ask for {', '.join(missing)}, the only "
                "HTTP request shape this dev host sends"
            )

        metadata = _round_trip(
            await worker.functions_metadata_request(
                _Request(
                    "WorkerMetadataRequest",
                    _round_trip(
                        pb.StreamingMessage(
                            request_id=uuid.uuid4().hex,
                            functions_metadata_request=pb.FunctionsMetadataRequest(
                                function_app_directory=str(self.app_dir)
                            ),
                        )
                    ),
                )
            )
        )
        _check(metadata.result, "the worker could not list the functions")
        if metadata.use_default_metadata_indexing or not metadata.function_metadata_results:
            raise WorkerRefused(f"the worker found no functions in {self.script}")

        for meta in metadata.function_metadata_results:
            loaded = _round_trip(
                await worker.function_load_request(
                    _Request(
                        "FunctionLoadRequest",
                        _round_trip(
                            pb.StreamingMessage(
                                request_id=uuid.uuid4().hex,
                                function_load_request=pb.FunctionLoadRequest(
                                    function_id=meta.function_id, metadata=meta
                                ),
                            )
                        ),
                    )
                )
            )
            _check(loaded.result, f"the worker could not load {meta.name}")
            bindings = tuple(json.loads(raw) for raw in meta.raw_bindings)
            self.functions.append(FunctionSpec(meta.function_id, meta.name, bindings))
        return self.functions

    async def invoke(self, function: FunctionSpec, trigger: Any, *, trace_parent: str = "") -> Any:
        """Invoke ``function`` with ``trigger`` (a TypedData) bound to its trigger parameter.

        Returns the worker's InvocationResponse; its ``result.status`` says whether the
        function succeeded.
        """
        pb = protos()
        invocation_id = str(uuid.uuid4())
        request = pb.StreamingMessage(
            request_id=uuid.uuid4().hex,
            invocation_request=pb.InvocationRequest(
                invocation_id=invocation_id,
                function_id=function.function_id,
                input_data=[pb.ParameterBinding(name=function.trigger["name"], data=trigger)],
                trace_context=pb.RpcTraceContext(trace_parent=trace_parent),
            ),
        )
        response = await self._worker.invocation_request(
            _Request("FunctionInvocationRequest", _round_trip(request))
        )
        return _round_trip(response)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop_threadpool_executor()


# --- the host's side of an HTTP invocation ---------------------------------------------------


def http_trigger(
    method: str,
    url: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
) -> Any:
    """An HTTP request as the Functions host puts it in an invocation: header names in lower
    case, empty query values left out, and the body as raw bytes because the worker asks
    for them (RawHttpBodyBytes). An empty body is left unset."""
    pb = protos()
    http = pb.RpcHttp(
        method=method,
        url=url,
        headers={name.lower(): value for name, value in headers.items()},
        query={name: value for name, value in query.items() if value},
        params=dict(route_params),
    )
    if body:
        http.body.CopyFrom(pb.TypedData(bytes=body))
    return pb.TypedData(http=http)


def _body_bytes(data: Any) -> tuple[bytes, str | None]:
    """The bytes of a TypedData body and the content type its kind implies."""
    kind = data.WhichOneof("data")
    if kind in ("bytes", "stream"):
        return bytes(getattr(data, kind)), "application/octet-stream"
    if kind == "string":
        return data.string.encode(), "text/plain; charset=utf-8"
    if kind == "json":
        return data.json.encode(), "application/json"
    if kind in ("int", "double"):
        return str(getattr(data, kind)).encode(), "text/plain; charset=utf-8"
    return b"", None


def _cookie_header(cookie: Any) -> str:
    parts = [f"{cookie.name}={cookie.value}"]
    if cookie.HasField("domain"):
        parts.append(f"Domain={cookie.domain.value}")
    if cookie.HasField("path"):
        parts.append(f"Path={cookie.path.value}")
    if cookie.HasField("max_age"):
        parts.append(f"Max-Age={int(cookie.max_age.value)}")
    if cookie.HasField("secure") and cookie.secure.value:
        parts.append("Secure")
    if cookie.HasField("http_only") and cookie.http_only.value:
        parts.append("HttpOnly")
    return "; ".join(parts)


def http_answer(response: Any, function: FunctionSpec) -> HttpAnswer:
    """The HTTP response the host writes for a successful invocation of ``function``."""
    out = next(
        (
            b
            for b in function.bindings
            if b.get("type") == "http" and str(b.get("direction", "")).upper() == "OUT"
        ),
        None,
    )
    data = (
        response.return_value
        if out is None or out["name"] == "$return"
        else next((p.data for p in response.output_data if p.name == out["name"]), None)
    )
    if data is None or data.WhichOneof("data") is None:
        return HttpAnswer(204)
    if data.WhichOneof("data") != "http":
        body, content_type = _body_bytes(data)
        return HttpAnswer(200, [("Content-Type", content_type)] if content_type else [], body)
    http = data.http
    body, implied = _body_bytes(http.body)
    headers = [
        (name, value) for name, value in http.headers.items() if name.lower() != "content-length"
    ]
    if implied and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", implied))
    headers += [("Set-Cookie", _cookie_header(c)) for c in http.cookies]
    return HttpAnswer(int(http.status_code or 200), headers, body)


def timer_trigger(*, past_due: bool = False, info: Mapping[str, Any] | None = None) -> Any:
    """A timer invocation's input: the TimerInfo JSON the Functions host sends."""
    pb = protos()
    payload: dict[str, Any] = {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": None,
        "IsPastDue": past_due,
    }
    payload.update(info or {})
    return pb.TypedData(json=json.dumps(payload))


def empty_trigger() -> Any:
    """The input of a trigger that carries no data of its own (warmup)."""
    return protos().TypedData(json="{}")
