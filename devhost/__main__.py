"""python -m devhost [--port 7071] [--app function_app] [--enforce-keys]"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from devhost.host import build_web_app, load_local_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--app", default="function_app",
                        help="module holding the FunctionApp named `app`")
    parser.add_argument("--enforce-keys", action="store_true",
                        help="check keys from DEVHOST_FUNCTION_KEY / DEVHOST_MASTER_KEY")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # The Azure SDKs log every HTTP request at INFO; host.json keeps them at Warning in Azure.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.root.level))
    load_local_settings()
    try:
        web_app = build_web_app(args.app, enforce_keys=args.enforce_keys)
    except Exception as exc:  # a bad setting names itself here, before we listen
        print(f"devhost: cannot load {args.app}: {exc}", file=sys.stderr)
        return 2
    print(f"devhost: serving {args.app} on http://{args.host}:{args.port}", flush=True)
    # aiohttp's default listen backlog (128) drops connections in a 10x burst before the
    # app sees them; the Functions host's front end queues far more.
    web.run_app(web_app, host=args.host, port=args.port, access_log=None, print=None,
                backlog=args.backlog)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
