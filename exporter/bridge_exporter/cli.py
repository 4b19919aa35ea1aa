"""Command line: `bridge-exporter` serves; subcommands validate, simulate, reflector."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from . import __version__
from .config import ConfigError, load_inventory
from .logs import LEVELS, setup_logging
from .resources import log_simulator_fd_budget, raise_fd_limit
from .sharding import Shard, ShardError, parse_shard

log = logging.getLogger("bridge_exporter")
DEFAULT_LISTEN = ":9198"


def parse_listen_address(value: str, default_port: int | None = None) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[IPV6]:PORT`."""
    host, sep, port = value.rpartition(":")
    if not sep:
        if default_port is None:
            raise argparse.ArgumentTypeError(f"{value!r}: write HOST:PORT, e.g. 127.0.0.1:9198")
        host, port = value, str(default_port)
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: the port must be 1-65535")
    return host, int(port)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log.level", dest="log_level", choices=list(LEVELS), default="info")
    parser.add_argument(
        "--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge-exporter",
        description="Prometheus exporter for videoconference bridge networks. Without a "
        "subcommand it probes the inventory and serves /metrics.",
    )
    parser.add_argument("--version", action="version", version=f"bridge-exporter {__version__}")
    parser.add_argument(
        "--config.file", dest="config_file", default="bridge.yml", help="inventory file"
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        action="append",
        type=parse_listen_address,
        help=f"address to serve on (repeatable; default {DEFAULT_LISTEN})",
    )
    _add_shard(parser, "probe and export only this share of the inventory")
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        help="exporter-toolkit web config (TLS, basic auth, headers); re-read when it changes",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST/PUT /-/reload (SIGHUP always reloads)",
    )
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = sub.add_parser("validate", help="check an inventory file and list every problem")
    validate.add_argument("file", nargs="+", help="inventory file(s)")

    simulate = sub.add_parser(
        "simulate", help="serve a simulated bridge network for an inventory (loopback only)"
    )
    simulate.add_argument("--config.file", dest="config_file", required=True)
    simulate.add_argument("--scenario", help="scenario file of timed faults")
    simulate.add_argument(
        "--control.listen-address",
        dest="control_listen",
        type=parse_listen_address,
        default=("127.0.0.1", 9199),
        help="control API address (default 127.0.0.1:9199)",
    )
    _add_shard(simulate, "serve only the endpoints that exporter shard I/N exports")
    _add_common(simulate)

    _add_check_and_report(sub)

    reflector = sub.add_parser("reflector", help="run a STAMP (RFC 8762) session-reflector")
    reflector.add_argument(
        "--listen",
        dest="listen",
        action="append",
        type=lambda v: parse_listen_address(v, default_port=862),
        help="HOST[:PORT] to answer on (repeatable; default 0.0.0.0:862)",
    )
    _add_common(reflector)
    return parser


def _add_shard(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help=f"{what}: shard I of N; whole subtrees by a stable hash (see --shard.tier)",
    )
    parser.add_argument(
        "--shard.tier",
        dest="shard_tier",
        metavar="TIER",
        help="split at this tier (default: the tier below the root); the tiers above "
        "it are probed by every shard and exported by shard 1",
    )


def _shard_of(args: argparse.Namespace) -> Shard | None:
    if args.shard is None:
        if args.shard_tier is not None:
            build_parser().error("--shard.tier needs --shard I/N")
        return None
    return Shard(args.shard.index, args.shard.count, args.shard_tier)


def _add_check_and_report(sub) -> None:
    from .check import add_arguments as add_check_arguments
    from .report.command import add_arguments as add_report_arguments

    check = sub.add_parser(
        "check",
        help="probe every point (of a session) now and say whether it is ready "
        "(exit 0 ready, 3 degraded, 4 down, 1 config error)",
    )
    add_check_arguments(check)
    _add_common(check)
    report = sub.add_parser("report", help="a session's reliability report from Prometheus history")
    add_report_arguments(report)
    _add_common(report)


def cmd_validate(files: Sequence[str]) -> int:
    failed = False
    for path in files:
        try:
            inventory = load_inventory(path)
        except ConfigError as exc:
            failed = True
            print(str(exc), file=sys.stderr)
            count = len(exc.problems)
            print(f"{path}: INVALID ({count} problem{'s' if count != 1 else ''})", file=sys.stderr)
            continue
        per_tier = ", ".join(
            f"{sum(1 for e in inventory.endpoints.values() if e.tier == t.name)} {t.name}"
            for t in inventory.tiers
        )
        count = len(inventory.sessions)
        sessions = f", {count} session{'s' if count != 1 else ''}" if count else ""
        print(f"{path}: OK: {len(inventory.endpoints)} endpoints ({per_tier}){sessions}")
    return 1 if failed else 0


class _Signals:
    """SIGTERM/SIGINT stop, SIGHUP reloads. Installed first thing, so that a signal that
    arrives while the exporter starts is never handled by the default action (death)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._reloads: set[asyncio.Task] = set()  # the loop keeps only weak references
        self.on_reload: Callable[[], Awaitable[object]] | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _reload(self) -> None:
        if self.on_reload is None:
            log.warning("SIGHUP ignored: nothing to reload yet")
            return
        task = self._loop.create_task(self.on_reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def wait(self) -> None:
        await self._stop.wait()


async def serve(
    config_file: str,
    listen: list[tuple[str, int]],
    shard: Shard | None = None,
    web_config_file: str | None = None,
    enable_lifecycle: bool = False,
) -> int:
    from .runtime import Exporter
    from .web import make_runner, watch_accept_errors
    from .webconfig import ReloadingTlsSite, WebConfigWatcher

    signals = _Signals()
    web_config = None
    if web_config_file is not None:
        try:
            web_config = WebConfigWatcher(web_config_file)
        except ConfigError as exc:
            log.error("cannot start: the web config file has problems:\n%s", exc)
            return 1
    fd_limit = raise_fd_limit()
    try:
        exporter = await Exporter.create(config_file, shard)
    except ConfigError as exc:
        log.error("cannot start: the config file has problems:\n%s", exc)
        return 1
    except ShardError as exc:
        log.error("cannot start: %s", exc)
        return 1
    if shard:
        from .sharding import exported_ids

        exported = len(exported_ids(exporter.inventory, shard))
        probed = len(exporter.inventory.endpoints)
        log.info(
            "shard %s: exporting %d endpoints, probing %d more above the split as context",
            shard, exported, probed - exported,
        )  # fmt: skip
    exporter.fd_limit = fd_limit
    watch_accept_errors(asyncio.get_running_loop(), lambda: exporter.resource_errors.add("accept"))
    await exporter.start()
    runner = make_runner(exporter, web_config, enable_lifecycle)
    await runner.setup()
    tls = web_config is not None and web_config.current.tls is not None
    try:
        for host, port in listen:
            if web_config is not None and tls:
                await ReloadingTlsSite(runner, host or None, port, web_config).start()
            else:
                await web.TCPSite(runner, host or None, port).start()
            log.info("listening on %s:%d (%s)", host or "*", port, "https" if tls else "http")
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        await exporter.stop()
        await runner.cleanup()
        return 1
    exporter.check_fd_budget()
    signals.on_reload = exporter.reload
    await signals.wait()
    log.info("stopping")
    await runner.cleanup()
    await exporter.stop()
    return 0


async def _run_until_signal(coro, what: str) -> int:
    """Run a serving coroutine until SIGTERM/SIGINT; 1 if it fails on its own."""
    signals = _Signals()
    task = asyncio.create_task(coro)
    waiter = asyncio.create_task(signals.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:  # ended on its own; checked before any await, which would re-raise
        if error := task.exception():
            log.error("%s failed: %s: %s", what, type(error).__name__, error)
            return 1
        return 0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


async def simulate(
    config_file: str,
    scenario_file: str | None,
    control: tuple[str, int],
    shard: Shard | None = None,
) -> int:
    from .simulate.network import serve as serve_simulation
    from .simulate.scenario import load_scenario
    from .web import watch_accept_errors

    fd_limit = raise_fd_limit()
    try:
        inventory = load_inventory(config_file)
        scenario = load_scenario(scenario_file, inventory) if scenario_file else None
    except ConfigError as exc:
        log.error("cannot simulate: %s", exc)
        return 1
    only = None
    if shard:
        from .sharding import exported_ids

        try:
            only = exported_ids(inventory, shard)
        except ShardError as exc:
            log.error("cannot simulate: %s", exc)
            return 1
        log.info("shard %s: serving %d of %d endpoints", shard, len(only), len(inventory.endpoints))
    else:
        log_simulator_fd_budget(inventory, fd_limit)
    watch_accept_errors(asyncio.get_running_loop())
    serving = serve_simulation(inventory, scenario, control, only)
    return await _run_until_signal(serving, "simulator")


async def reflector(listen: list[tuple[str, int]]) -> int:
    from .reflector import run_reflector

    return await _run_until_signal(run_reflector(listen), "reflector")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.command == "validate":
        return cmd_validate(args.file)
    if args.command == "simulate":
        return asyncio.run(
            simulate(args.config_file, args.scenario, args.control_listen, _shard_of(args))
        )
    if args.command == "check":
        from .check import run_check

        return run_check(args.config_file, args.session, args.rounds, args.format, args.lang)
    if args.command == "report":
        from .report.command import run_report

        return run_report(args)
    if args.command == "reflector":
        return asyncio.run(reflector(args.listen or [("0.0.0.0", 862)]))
    listen = args.listen or [parse_listen_address(DEFAULT_LISTEN)]
    return asyncio.run(
        serve(
            args.config_file, listen, _shard_of(args), args.web_config_file, args.enable_lifecycle
        )
    )


if __name__ == "__main__":
    sys.exit(main())
