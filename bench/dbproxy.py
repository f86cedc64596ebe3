"""A capacity-limited "database" in front of Azurite: ``python -m bench.dbproxy``.

Azurite answers a point read in about a millisecond, far faster than a real database
under a spike, so this HTTP proxy makes it behave like one with a fixed capacity:

* ``slots`` requests are served at once; each takes at least ``service_ms`` (Azurite's own
  time included), so throughput saturates near ``slots / service_ms``
  (8 slots x 32 ms = 250 reads/s);
* beyond that, requests wait in a FIFO queue, so overload shows as growing latency and
  then client timeouts. A request whose client gave up is still served, as a real
  database finishes a query nobody waits for any more;
* ``stall`` holds every request (queued or in service) until it is switched off;
  ``down`` resets every connection as soon as a request arrives.

It logs the arrival time of every read (``GET``) and the time its service began, on the
machine-wide monotonic clock, so the benchmark can find the busiest 1-second window. Reads
that are page queries (a table's ``()`` with a filter, as the bulk warm sends) are logged
apart as well. Control lives under ``/__dbproxy/`` on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from yarl import URL

__all__ = ["DbProxy", "main"]

_HOP_BY_HOP = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "content-encoding",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
}
MODES = ("normal", "stall", "down")


class DbProxy:
    def __init__(self, upstream: str, slots: int, service_ms: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.slots = slots
        self.service_s = service_ms / 1000
        self.mode = "normal"
        self._gate = asyncio.Semaphore(slots)
        self._running = asyncio.Event()
        self._running.set()
        self._session: ClientSession | None = None
        self.waiting = 0
        self.in_service = 0
        self.reads: list[float] = []  # arrival of each GET
        self.queries: list[float] = []  # arrival of each GET that is a page query
        self.served: list[float] = []  # start of service of each GET
        self.resets = 0
        self.refused: list[float] = []  # requests reset while "down"
        self.samples: list[tuple[float, int, int]] = []
        self._sampler: asyncio.Task[None] | None = None

    async def start(self, app: web.Application) -> None:
        # Keep the collector's pauses short: what exists at start-up is never rescanned,
        # and the young generation is collected less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        # Connections to Azurite are reused; more than the slots only for control traffic.
        self._session = ClientSession(
            connector=TCPConnector(limit=self.slots * 2, force_close=False),
            timeout=ClientTimeout(total=60),
            auto_decompress=False,
        )
        self._sampler = asyncio.ensure_future(self._sample())

    async def stop(self, app: web.Application) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._session is not None:
            await self._session.close()

    async def _sample(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.waiting, self.in_service))
            await asyncio.sleep(0.1)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        if mode == "stall":
            self._running.clear()
        else:
            self._running.set()

    # --- the data path ---------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/__dbproxy/"):
            return await self._control(request)
        arrived = time.monotonic()
        is_read = request.method == "GET"
        if self.mode == "down":
            # Refused, so no read: the database never saw it. (aiohttp retries an
            # idempotent request once when a kept-alive connection drops, so a client
            # may knock twice.)
            self.refused.append(arrived)
            return self._reset(request)
        if is_read:
            self.reads.append(arrived)
            # A point read names its entity, table(PartitionKey=...,RowKey=...); a query
            # addresses the table as table() with $filter in the query string.
            if request.path.endswith("()"):
                self.queries.append(arrived)
        body = await request.read()
        self.waiting += 1
        try:
            await self._running.wait()
            await self._gate.acquire()
        finally:
            self.waiting -= 1
        self.in_service += 1
        try:
            began = time.monotonic()
            if is_read:
                self.served.append(began)
            status, headers, payload = await self._forward(request, body)
            rest = self.service_s - (time.monotonic() - began)
            if rest > 0:
                await asyncio.sleep(rest)
            await self._running.wait()
            if self.mode == "down":
                return self._reset(request)
        finally:
            self.in_service -= 1
            self._gate.release()
        return web.Response(status=status, headers=headers, body=payload)

    def _reset(self, request: web.Request) -> web.StreamResponse:
        self.resets += 1
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client: its connection is already gone.
        return web.Response(status=503)

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        # The raw path, untouched: the request's signature covers it byte for byte.
        url = URL(self.upstream + request.raw_path, encoded=True)
        # No body, no Content-Type: aiohttp would add one, and the signature covers it.
        async with self._session.request(
            request.method,
            url,
            headers=headers,
            data=body or None,
            skip_auto_headers=("Content-Type",),
        ) as resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
            return resp.status, out, payload

    # --- control ---------------------------------------------------------------------

    async def _control(self, request: web.Request) -> web.StreamResponse:
        action = request.path.removeprefix("/__dbproxy/")
        if action == "mode" and request.method == "POST":
            data: dict[str, Any] = await request.json()
            try:
                self.set_mode(str(data.get("mode")))
            except ValueError:
                return web.json_response({"error": f"mode must be one of {MODES}"}, status=400)
            return web.json_response({"mode": self.mode, "at": time.monotonic()})
        if action == "reset" and request.method == "POST":
            self.reads.clear()
            self.queries.clear()
            self.served.clear()
            self.refused.clear()
            self.samples.clear()
            self.resets = 0
            return web.json_response({"ok": True})
        if action == "stats" and request.method == "GET":
            return web.json_response(
                {
                    "mode": self.mode,
                    "slots": self.slots,
                    "serviceMs": self.service_s * 1000,
                    "waiting": self.waiting,
                    "inService": self.in_service,
                    "resets": self.resets,
                    "reads": self.reads,
                    "queries": self.queries,
                    "served": self.served,
                    "refused": self.refused,
                    "samples": self.samples,
                }
            )
        return web.json_response({"error": "unknown control"}, status=404)

    def build(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dbproxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:10002")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=32.0)
    args = parser.parse_args(argv)
    proxy = DbProxy(args.upstream, args.slots, args.service_ms)
    print(
        f"dbproxy: 127.0.0.1:{args.port} -> {args.upstream}, {args.slots} slots x "
        f"{args.service_ms:g} ms",
        flush=True,
    )
    web.run_app(
        proxy.build(), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=1024
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
