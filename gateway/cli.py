"""The ``smallfleet`` command: the one module that assembles every package's commands.

``serve`` is here; ``train``, ``route`` and ``eval`` come from router/cli.py; ``prepare``,
``fleet`` and ``plan`` from fleet/ (prepare.py, cli.py, plan_cli.py). ``train`` also gets the
request-log options (``--from-log`` ...) from gateway/retrain.py.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}"


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fleet.config import ConfigError, default_fleet, load_fleet
    from gateway.access import AccessPolicy, admin_key_store, parse_networks
    from gateway.app import create_app
    from gateway.auth import ADMIN_KEYS_ENV, API_KEYS_ENV, KeyStore
    from gateway.auto import FleetRouter
    from gateway.settings import Settings

    try:
        config = load_fleet(args.config) if args.config else default_fleet()
        settings = Settings.from_environ()
        state_url = settings.state_store_url(config.state)
        router = None
        if config.router.artifact:
            router = FleetRouter.load(config.router.artifact, config.names())
        proxies = parse_networks([*config.access.trusted_proxies, *args.trusted_proxy], "--trusted-proxy")
    except (ConfigError, ValueError) as exc:
        print(f"smallfleet: {exc}", file=sys.stderr)
        return 2
    keys = KeyStore.from_settings(settings)
    if not keys:
        if not _is_loopback(args.host) and not args.insecure_no_auth:
            print(
                f"smallfleet: refusing to serve on {args.host} without API keys; set "
                f"{API_KEYS_ENV} or pass --insecure-no-auth",
                file=sys.stderr,
            )
            return 2
        whom = "anyone" if args.insecure_no_auth else "clients on this machine only, not through a proxy"
        print(f"smallfleet: no API keys set ({API_KEYS_ENV}); serving without auth to {whom}",
              file=sys.stderr)
    admin_keys = admin_key_store(settings)
    admin_loopback = config.access.admin_loopback or args.admin_loopback
    if not admin_keys:
        state = "open to clients on this machine (not through a proxy)" if admin_loopback else "closed"
        print(f"smallfleet: no admin keys set ({ADMIN_KEYS_ENV}); /admin/* {state}", file=sys.stderr)
    names = ", ".join(config.names())
    print(f"smallfleet: serving {names} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    if router is not None:
        print(f"smallfleet: model 'auto' routes over {', '.join(router.candidates)}", file=sys.stderr)
    if state_url is not None:
        print(
            f"smallfleet: limits, admin-made keys and the router version shared through "
            f"{_without_password(state_url)} (state.on_error: {config.state.on_error})",
            file=sys.stderr,
        )
    access = AccessPolicy(
        keyless="anyone" if args.insecure_no_auth else "local",
        admin_loopback=admin_loopback,
        trusted_proxies=proxies,
    )
    app = create_app(
        config, api_keys=keys, admin_keys=admin_keys, router=router, access=access, settings=settings,
        freeze_heap=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
        proxy_headers=False,  # the client address stays the peer's; gateway/access.py reads forwarded headers
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smallfleet",
        description="An OpenAI-compatible gateway for a fleet of small quantized models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("serve", help="serve the fleet over OpenAI's HTTP API")
    run.add_argument("--config", help="fleet YAML (default: the embedded default fleet)")
    run.add_argument("--host", default=DEFAULT_HOST)
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--insecure-no-auth", action="store_true", help="allow a non-loopback address without API keys"
    )
    run.add_argument(
        "--admin-loopback",
        action="store_true",
        help="with no admin keys, let clients on this machine that connect directly (not through a "
        "proxy) use /admin/* (config: access.admin_loopback)",
    )
    run.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="an address or network whose Forwarded / X-Forwarded-For headers are believed; repeatable "
        "(config: access.trusted_proxies)",
    )
    run.set_defaults(func=serve)
    from fleet.prepare import add_prepare_command

    add_prepare_command(commands)
    from fleet.cli import add_fleet_commands
    from fleet.plan_cli import add_plan_command
    from gateway.retrain import add_log_arguments
    from router.cli import add_commands

    add_commands(commands)
    add_fleet_commands(commands)
    add_plan_command(commands)
    add_log_arguments(commands.choices["train"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
