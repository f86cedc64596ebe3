"""python -m devhost [--port 7071] [--script function_app.py] [--enforce-keys] [--workers N]"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from aiohttp import web

from devhost.host import build_web_app, load_local_settings
from devhost.process import die_with_parent
from devhost.worker import WorkerRefused


def _exit_status(code: int) -> int:
    # Popen reports a death by signal N as -N; a shell would say 128 + N.
    return 128 - code if code < 0 else code


def _supervise(argv: list[str], workers: int) -> int:
    """Run ``workers`` copies of this host on one port, as the Functions host runs
    FUNCTIONS_WORKER_PROCESS_COUNT language workers on one instance.

    Each worker binds the port with SO_REUSEPORT and the kernel spreads connections over
    them. A stop (SIGTERM, or Ctrl-C here) reaches each worker once, as a SIGTERM: a second
    one would cut aiohttp's graceful shutdown short and drop the requests it is finishing.
    If a worker exits by itself, the others are stopped and its exit status is ours.
    """
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # Installed before any worker exists, so a stop that arrives while they start still
    # reaches every one of them.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        if stopping:
            break
        # A session of its own: a terminal's Ctrl-C reaches only this supervisor, which
        # passes it on once. Dying with it: a stale worker would keep the port, and
        # SO_REUSEPORT would let it share the port with the next host unseen.
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "devhost", *argv, "--worker"],
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        )
    first: subprocess.Popen[bytes] | None = None
    try:
        while first is None and not stopping:
            first = next((c for c in children if c.poll() is not None), None)
            time.sleep(0.1)
    finally:
        stop(signal.SIGTERM, None)
        codes = [child.wait() for child in children]
    if first is not None:
        return _exit_status(first.returncode)
    return next((_exit_status(c) for c in codes if c not in (0, -signal.SIGTERM)), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument(
        "--script",
        type=Path,
        default=Path("function_app.py"),
        help="the function app's script; its folder is the app's root, as "
        "/home/site/wwwroot in Azure (default: ./function_app.py)",
    )
    parser.add_argument(
        "--enforce-keys",
        action="store_true",
        help="check keys from DEVHOST_FUNCTION_KEY / DEVHOST_MASTER_KEY",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="the root logger's level (default INFO, the level Microsoft's worker sets)",
    )
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port (default: "
        "FUNCTIONS_WORKER_PROCESS_COUNT, else 1, as the Functions host)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    load_local_settings()
    source, raw = "--workers", str(args.workers)
    if args.workers is None:
        source = "FUNCTIONS_WORKER_PROCESS_COUNT"
        raw = os.environ.get(source, "").strip() or "1"
    # The Functions host allows 1 to 10 language worker processes per instance.
    if not raw.isdigit() or not 1 <= int(raw) <= 10:
        print(
            f"devhost: {source} must be a whole number from 1 to 10, got {raw!r}", file=sys.stderr
        )
        return 2
    args.workers = int(raw)
    if not args.script.is_file():
        print(f"devhost: no function app script at {args.script}", file=sys.stderr)
        return 2
    if args.workers > 1 and not args.worker:
        print(
            f"devhost: serving {args.script} on http://{args.host}:{args.port} "
            f"with {args.workers} workers",
            flush=True,
        )
        return _supervise(list(sys.argv[1:] if argv is None else argv), args.workers)
    # Every logger at the root's level, as Microsoft's worker leaves them: it sets the root
    # logger to INFO and forwards every record to the host (azure-functions-runtime,
    # workers/proxy_worker/dispatcher.py). The dev host silences nothing the app does not
    # silence itself, so what it prints is what Azure would keep.
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    async def started() -> web.Application:
        web_app = await build_web_app(args.script, enforce_keys=args.enforce_keys)
        if not args.worker:
            print(f"devhost: serving {args.script} on http://{args.host}:{args.port}", flush=True)
        return web_app

    try:
        # aiohttp's default listen backlog (128) drops connections in a 10x burst before the
        # app sees them; the Functions host's front end queues far more.
        web.run_app(
            started(),
            host=args.host,
            port=args.port,
            access_log=None,
            print=None,
            backlog=args.backlog,
            reuse_port=args.worker or None,
        )
    except WorkerRefused as exc:
        # A bad setting names itself here too: function_app.py parses the settings when the
        # worker imports it, and the worker reports the error as its own.
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
