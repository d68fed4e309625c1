"""The ``baselined`` command line.

``baselined serve`` runs the sidecar. Every other command talks to a running
sidecar over gRPC (``--target``, ``BASELINED_TARGET``, default
``127.0.0.1:50051``): ``baselines freeze|list|show|active|promote|rollback|retire|audit``
and ``windows show``. Read commands print a table, or JSON with ``--json``.
``baselined demo`` runs the end-to-end demo.

Exit codes: 0 success, 1 the sidecar refused or failed the request, 2 bad
usage or configuration, 3 the sidecar could not be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from baselined.v1 import baselined_pb2 as pb
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from sidecar.errors import ConfigError
from sidecar.settings import Settings
from sidecar.timeparse import parse_duration, parse_time

__all__ = ["main"]

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_QUANTILES = (0.5, 0.9, 0.99, 0.999)
_STATUS_NAMES = {"candidate": 1, "active": 2, "retired": 3}

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class _UsageError(Exception):
    pass


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"cli:{user}"


# -- parser ----------------------------------------------------------------------


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "sidecar settings",
        "Each flag overrides BASELINED_<NAME> (for example BASELINED_FLUSH_INTERVAL), "
        "which overrides the config file, which overrides the default shown.",
    )
    defaults = Settings.resolve(env={})
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {getattr(defaults, f.name)!r})"
        if f.type in ("bool", bool):
            group.add_argument(
                flag,
                dest=f.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            group.add_argument(
                flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text
            )


def _window_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="window from this long ago until now: 30s, 15m, 2h, 1d")
    parser.add_argument(
        "--start", help="window start: unix seconds or ISO-8601 (default: all retained)"
    )
    parser.add_argument(
        "--end", help="window end, exclusive: unix seconds or ISO-8601 (default: now)"
    )
    parser.add_argument(
        "--version",
        dest="versions",
        action="append",
        default=[],
        help="only this model version (repeatable; default: all versions merged)",
    )


def _target_flags(parser: argparse.ArgumentParser, *, read: bool) -> None:
    parser.add_argument(
        "--target",
        default=os.environ.get("BASELINED_TARGET", DEFAULT_TARGET),
        help="sidecar gRPC address, host:port or unix:/path (env BASELINED_TARGET; default %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the sidecar (default 30)"
    )
    if read:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _model_flags(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--model", "-m", required=required, help="model name")
    parser.add_argument(
        "--environment",
        "-e",
        default=os.environ.get("BASELINED_ENVIRONMENT", "production") if required else None,
        help="environment (env BASELINED_ENVIRONMENT; default production)"
        if required
        else "environment",
    )


def _actor_flags(parser: argparse.ArgumentParser, *, reason_required: bool) -> None:
    parser.add_argument(
        "--reason", "-r", required=reason_required, default="", help="why (kept in the audit log)"
    )
    parser.add_argument(
        "--actor",
        default=os.environ.get("BASELINED_ACTOR", _default_actor()),
        help="who is acting (env BASELINED_ACTOR; default cli:<user>)",
    )


def _quantile_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quantiles",
        "-q",
        default=",".join(str(q) for q in DEFAULT_QUANTILES),
        help="comma-separated quantile levels in [0, 1] (default %(default)s)",
    )
    parser.add_argument(
        "--top-k", type=int, default=10, help="categorical values to show (default 10)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baselined",
        description=(
            "baselined catches subtle regressions in production ML models: a middleware shadows "
            "sampled requests to this sidecar, which keeps t-digest windows and versioned baselines."
        ),
        epilog="Run 'baselined COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the sidecar (gRPC ingest, queries, baselines)",
        description="Run the sidecar until SIGTERM or Ctrl-C; on stop it reports NOT_SERVING, flushes and exits 0.",
    )
    serve.add_argument("--config", help="TOML config file (env BASELINED_CONFIG)")
    _add_settings_flags(serve)

    baselines = commands.add_parser("baselines", help="freeze, inspect and govern baselines")
    bcmd = baselines.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    freeze = bcmd.add_parser(
        "freeze",
        help="freeze a baseline from a window of live traffic",
        description="Freeze the window [start, end) (or the last --since) into an immutable candidate baseline.",
    )
    _model_flags(freeze)
    freeze.add_argument(
        "--name", "-n", required=True, help="baseline name, unique per model and environment"
    )
    _actor_flags(freeze, reason_required=False)
    _window_flags(freeze)
    freeze.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="free label (repeatable)"
    )
    freeze.add_argument(
        "--promote", action="store_true", help="make the new baseline active right away"
    )
    _target_flags(freeze, read=True)

    blist = bcmd.add_parser("list", help="list baselines")
    _model_flags(blist, required=False)
    blist.add_argument(
        "--status", choices=sorted(_STATUS_NAMES), help="only baselines with this status"
    )
    _target_flags(blist, read=True)

    show = bcmd.add_parser("show", help="show a baseline's series: counts, quantiles, top values")
    show.add_argument("id", help="baseline id (see 'baselines list')")
    _quantile_flags(show)
    _target_flags(show, read=True)

    active = bcmd.add_parser("active", help="show the active baseline of a model and environment")
    _model_flags(active)
    _target_flags(active, read=True)

    promote = bcmd.add_parser("promote", help="make a baseline the active one (audited)")
    promote.add_argument("id")
    _actor_flags(promote, reason_required=True)
    _target_flags(promote, read=True)

    rollback = bcmd.add_parser(
        "rollback", help="make the previously active baseline active again (audited)"
    )
    _model_flags(rollback)
    _actor_flags(rollback, reason_required=True)
    _target_flags(rollback, read=True)

    retire = bcmd.add_parser("retire", help="retire a baseline that is not active (audited)")
    retire.add_argument("id")
    _actor_flags(retire, reason_required=True)
    _target_flags(retire, read=True)

    audit = bcmd.add_parser("audit", help="list audit entries of baseline changes")
    _model_flags(audit, required=False)
    audit.add_argument(
        "--limit", type=int, default=100, help="newest entries to show (default 100)"
    )
    _target_flags(audit, read=True)

    windows = commands.add_parser("windows", help="inspect live windows")
    wcmd = windows.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    wshow = wcmd.add_parser("show", help="summarise the live window of a model and environment")
    _model_flags(wshow)
    _window_flags(wshow)
    _quantile_flags(wshow)
    _target_flags(wshow, read=True)

    demo = commands.add_parser(
        "demo",
        help="run the end-to-end demo (model server + middleware + sidecar, regression injected)",
        description="Starts a real sidecar on an embedded SQLite store and a small model server wrapped "
        "by the middleware, sends traffic, freezes a baseline, injects a regression and shows it.",
    )
    demo.add_argument(
        "--workdir", default=None, help="folder for the demo's store and logs (default: a temp dir)"
    )
    demo.add_argument(
        "--requests", type=int, default=3000, help="requests per phase (default 3000)"
    )
    return parser


# -- helpers ---------------------------------------------------------------------


def _window_bounds(args: argparse.Namespace) -> tuple[float, float]:
    try:
        if args.since and (args.start or args.end):
            raise _UsageError("give either --since or --start/--end, not both")
        if args.since:
            return time.time() - parse_duration(args.since), 0.0
        start = parse_time(args.start) if args.start else 0.0
        end = parse_time(args.end) if args.end else 0.0
    except ValueError as err:
        raise _UsageError(str(err)) from err
    if end and start >= end:
        raise _UsageError("--start must be before --end")
    return start, end


def _quantiles(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise _UsageError(
            f"--quantiles must be numbers separated by commas, got {text!r}"
        ) from None
    bad = [q for q in levels if not 0.0 <= q <= 1.0]
    if bad:
        raise _UsageError(f"--quantiles must lie in [0, 1], got {bad}")
    return levels


def _labels(items: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"--label must look like KEY=VALUE, got {item!r}")
        labels[key] = value
    return labels


def _as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _print_json(message: Message) -> None:
    print(json.dumps(_as_dict(message), indent=2, sort_keys=False))


def _fmt_time(ts: float) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"


def _fmt_num(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.6g}"


def _status(value: int) -> str:
    return pb.BaselineStatus.Name(value).removeprefix("BASELINE_STATUS_").lower()


def _kind(value: int) -> str:
    return pb.SignalKind.Name(value).removeprefix("SIGNAL_KIND_").lower()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def _print_baseline(b: pb.Baseline) -> None:
    print(f"baseline {b.id}  {b.model}/{b.environment}  name={b.name}  status={_status(b.status)}")
    print(f"  window   {_fmt_time(b.window_start)} .. {_fmt_time(b.window_end)}")
    print(
        f"  created  {_fmt_time(b.created_at)} by {b.created_by or '-'}  reason: {b.reason or '-'}"
    )
    print(
        f"  versions {', '.join(b.versions) or '-'}  series={b.series_count}  records={b.record_count}"
    )
    if b.parent_id:
        print(f"  parent   {b.parent_id}")
    if b.fingerprint.hash:
        print(f"  fingerprint {b.fingerprint.hash}")


def _series_table(series: Sequence[pb.SeriesSummary], levels: Sequence[float]) -> str:
    headers = ["version", "slice", "kind", "signal", "count", "missing", "min", "mean", "max"]
    headers += [f"p{q * 100:g}" for q in levels]
    rows = []
    for s in series:
        row = [
            s.version or "-",
            s.slice,
            _kind(s.kind),
            s.signal,
            str(s.count),
            f"{s.missing_rate:.2%}",
        ]
        if s.categorical:
            top = ", ".join(f"{c.value}:{c.count}" for c in s.top_values[:3])
            row += ["", f"[{s.distinct} distinct] {top}", ""] + [""] * len(levels)
        else:
            by_q = {round(q.q, 9): q.value for q in s.quantiles}
            row += [_fmt_num(s.min), _fmt_num(s.mean), _fmt_num(s.max)]
            row += [_fmt_num(by_q.get(round(q, 9), math.nan)) for q in levels]
        rows.append(row)
    return _table(headers, rows)


# -- commands --------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from middleware import Client

    return Client(args.target, timeout=args.timeout)


def _cmd_serve(args: argparse.Namespace) -> int:
    from sidecar.server import run

    names = Settings.names()
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    settings = Settings.resolve(given, config_file=args.config)
    return run(settings)


def _cmd_freeze(args: argparse.Namespace) -> int:
    start, end = _window_bounds(args)
    with _client(args) as client:
        baseline = client.freeze(
            model=args.model,
            environment=args.environment,
            name=args.name,
            reason=args.reason,
            actor=args.actor,
            start=start,
            end=end,
            versions=args.versions,
            labels=_labels(args.label),
        )
        if args.promote:
            baseline = client.promote(
                baseline.id, reason=args.reason or "frozen with --promote", actor=args.actor
            )
    if args.json:
        _print_json(baseline)
    else:
        _print_baseline(baseline)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    status = _STATUS_NAMES.get(args.status or "", 0)
    with _client(args) as client:
        response = client.list(
            model=args.model or "", environment=args.environment or "", status=status
        )
    if args.json:
        _print_json(response)
        return EXIT_OK
    rows = [
        [
            b.id,
            b.model,
            b.environment,
            b.name,
            _status(b.status),
            _fmt_time(b.created_at),
            str(b.record_count),
            b.reason,
        ]
        for b in response.baselines
    ]
    if not rows:
        print("no baselines")
        return EXIT_OK
    print(
        _table(
            ["id", "model", "environment", "name", "status", "created", "records", "reason"], rows
        )
    )
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    levels = _quantiles(args.quantiles)
    with _client(args) as client:
        view = client.get(args.id, quantiles=levels, top_k=args.top_k)
    if args.json:
        _print_json(view)
        return EXIT_OK
    _print_baseline(view.baseline)
    print()
    print(_series_table(view.series, levels))
    return EXIT_OK


def _cmd_active(args: argparse.Namespace) -> int:
    with _client(args) as client:
        baseline = client.active(model=args.model, environment=args.environment)
    if args.json:
        _print_json(baseline)
    else:
        _print_baseline(baseline)
    return EXIT_OK


def _cmd_promote(args: argparse.Namespace) -> int:
    with _client(args) as client:
        baseline = client.promote(args.id, reason=args.reason, actor=args.actor)
    if args.json:
        _print_json(baseline)
    else:
        print(
            f"{baseline.id} ({baseline.name}) is now active for {baseline.model}/{baseline.environment}"
        )
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    with _client(args) as client:
        baseline = client.rollback(
            model=args.model, environment=args.environment, reason=args.reason, actor=args.actor
        )
    if args.json:
        _print_json(baseline)
    else:
        print(
            f"rolled back: {baseline.id} ({baseline.name}) is active again for {baseline.model}/{baseline.environment}"
        )
    return EXIT_OK


def _cmd_retire(args: argparse.Namespace) -> int:
    with _client(args) as client:
        baseline = client.retire(args.id, reason=args.reason, actor=args.actor)
    if args.json:
        _print_json(baseline)
    else:
        print(f"{baseline.id} ({baseline.name}) is retired")
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise _UsageError("--limit must be greater than 0")
    with _client(args) as client:
        response = client.audit(
            model=args.model or "", environment=args.environment or "", limit=args.limit
        )
    if args.json:
        _print_json(response)
        return EXIT_OK
    rows = [
        [
            str(e.seq),
            _fmt_time(e.time),
            e.actor,
            e.action,
            f"{e.model}/{e.environment}",
            e.target,
            e.reason,
        ]
        for e in response.entries
    ]
    if not rows:
        print("no audit entries")
        return EXIT_OK
    print(_table(["seq", "time", "actor", "action", "model/env", "target", "reason"], rows))
    return EXIT_OK


def _cmd_window(args: argparse.Namespace) -> int:
    start, end = _window_bounds(args)
    levels = _quantiles(args.quantiles)
    with _client(args) as client:
        view = client.window(
            model=args.model,
            environment=args.environment,
            start=start,
            end=end,
            versions=args.versions,
            quantiles=levels,
            top_k=args.top_k,
        )
    if args.json:
        _print_json(view)
        return EXIT_OK
    print(
        f"window {view.model}/{view.environment}  {_fmt_time(view.start)} .. {_fmt_time(view.end)}  "
        f"versions={', '.join(view.versions) or '-'}  writers={len(view.instances)}"
    )
    if not view.series:
        print("no data in this window")
        return EXIT_OK
    print()
    print(_series_table(view.series, levels))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from sidecar.demo import run_demo

    return run_demo(workdir=args.workdir, requests=args.requests)


_COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("serve", None): _cmd_serve,
    ("demo", None): _cmd_demo,
    ("baselines", "freeze"): _cmd_freeze,
    ("baselines", "list"): _cmd_list,
    ("baselines", "show"): _cmd_show,
    ("baselines", "active"): _cmd_active,
    ("baselines", "promote"): _cmd_promote,
    ("baselines", "rollback"): _cmd_rollback,
    ("baselines", "retire"): _cmd_retire,
    ("baselines", "audit"): _cmd_audit,
    ("windows", "show"): _cmd_window,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``baselined`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    key = (args.command, getattr(args, "subcommand", None))
    handler = _COMMANDS.get(key)
    if handler is None:
        if args.command is None:
            parser.print_help()
        else:
            parser.parse_args([args.command, "--help"])
        return EXIT_USAGE
    try:
        return handler(args)
    except _UsageError as err:
        print(f"baselined: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:
        print(f"baselined: configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        return _report_client_error(err, args)


def _report_client_error(err: Exception, args: argparse.Namespace) -> int:
    from middleware import ClientError

    if not isinstance(err, ClientError):
        raise err
    code = err.code.name if err.code is not None else "UNKNOWN"
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        print(
            f"baselined: cannot reach the sidecar at {args.target} ({code}: {err.details}). "
            "Is 'baselined serve' running there? Set --target or BASELINED_TARGET.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    print(f"baselined: {code}: {err.details}", file=sys.stderr)
    return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
