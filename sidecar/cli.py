"""The ``baselined`` command line.

``baselined serve`` runs the sidecar. Every other command talks to a running
sidecar over gRPC (``--target``, ``BASELINED_TARGET``, default
``127.0.0.1:50051``; credentials with ``--token`` and ``--tls-*``):
``baselines freeze|list|show|active|promote|rollback|retire|audit|approve|pending|export|import|diff``,
``policy show|set``, ``audit list|verify``, ``windows show``, ``alerts list|watch``,
``events add|list``, ``impact list|show`` and ``compare``. Read commands print a table, or JSON with
``--json``. ``baselined replay FILE`` runs the engine over a JSON Lines file on a
simulated clock; ``baselined demo`` runs the end-to-end demo; ``baselined auth
hash-token`` hashes a token for the principals file.

Exit codes: 0 success, 1 the sidecar refused or failed the request, 2 bad
usage or configuration, 3 the sidecar could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
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

from sidecar import outcomes_cli
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
    _credential_flags(parser)
    if read:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _credential_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("credentials (docs/security.md)")
    group.add_argument(
        "--token", default=env("BASELINED_TOKEN"), help="bearer token (env BASELINED_TOKEN)"
    )
    group.add_argument(
        "--token-file",
        default=env("BASELINED_TOKEN_FILE"),
        help="file holding the bearer token (env BASELINED_TOKEN_FILE)",
    )
    group.add_argument(
        "--tls-ca",
        default=env("BASELINED_TLS_CA"),
        help="PEM CA of the sidecar's certificate; turns TLS on (env BASELINED_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        default=env("BASELINED_CLIENT_CERT"),
        help="PEM client certificate for mTLS (env BASELINED_CLIENT_CERT)",
    )
    group.add_argument(
        "--tls-key",
        default=env("BASELINED_CLIENT_KEY"),
        help="PEM key of --tls-cert (env BASELINED_CLIENT_KEY)",
    )


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
    serve.add_argument(
        "--insecure-open",
        dest="allow_open",
        action="store_const",
        const=True,
        help="same as --allow-open: serve without authentication off loopback",
    )
    _auth_parser(commands)

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
    _transfer_parsers(bcmd)

    windows = commands.add_parser("windows", help="inspect live windows")
    wcmd = windows.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    wshow = wcmd.add_parser("show", help="summarise the live window of a model and environment")
    _model_flags(wshow)
    _window_flags(wshow)
    _quantile_flags(wshow)
    _target_flags(wshow, read=True)

    alerts = commands.add_parser("alerts", help="list and watch regression alerts")
    acmd = alerts.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    alist = acmd.add_parser("list", help="list firing alerts (with --all, recently resolved too)")
    _model_flags(alist, required=False)
    alist.add_argument("--all", action="store_true", help="include recently resolved alerts")
    _target_flags(alist, read=True)
    watch = acmd.add_parser(
        "watch",
        help="print every alert change as it happens, until Ctrl-C",
        description="Streams alert changes (fired, escalated, de-escalated, resolved); "
        "with --json one JSON object per line.",
    )
    _model_flags(watch, required=False)
    watch.add_argument(
        "--include-firing",
        action="store_true",
        help="start with every alert firing now (oldest first), then the changes",
    )
    _target_flags(watch, read=True)

    compare = commands.add_parser(
        "compare",
        help="compare live traffic with the active baseline now",
        description="Runs a comparison of a model and environment against its active baseline "
        "and prints every series' effects with their confidence bounds and tier. "
        "It does not change alert state.",
    )
    _model_flags(compare)
    _target_flags(compare, read=True)

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
    _replay_parser(commands)
    _events_parser(commands)
    _impact_parser(commands)
    outcomes_cli.add_parsers(commands, _target_flags)  # issue 8
    _governance_parsers(commands, bcmd)
    return parser


_EVENT_TYPES = [
    "deploy", "model_rollout", "library_update", "config_change", "node_change",
    "accelerator_change", "data_source_change", "autoscale", "image_change",
    "python_change", "custom",
]  # fmt: skip


def _events_parser(commands: Any) -> None:
    events = commands.add_parser("events", help="record and list change events (deploys, ...)")
    ecmd = events.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    add = ecmd.add_parser(
        "add",
        help="record a change event",
        description="Record a change (deploy, library update, ...) so alerts and impact "
        "checks can relate to it. Scope fields left out mean 'any'.",
    )
    add.add_argument("--type", "-t", required=True, choices=_EVENT_TYPES, help="event type")
    add.add_argument(
        "--custom-type", default="", help="name of a custom event (with --type custom)"
    )
    add.add_argument("--model", "-m", required=True, help="model name")
    add.add_argument(
        "--environment",
        "-e",
        default=os.environ.get("BASELINED_ENVIRONMENT", ""),
        help="environment (env BASELINED_ENVIRONMENT; default: all)",
    )
    for name in ("version", "node", "image"):
        add.add_argument(f"--{name}", default="", help=f"{name} the change applies to")
    add.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="free attribute (repeatable)",
    )
    add.add_argument(
        "--time", help="when the change happened: unix seconds or ISO-8601 (default: now)"
    )
    add.add_argument(
        "--actor",
        default=os.environ.get("BASELINED_ACTOR", _default_actor()),
        help="who records it (env BASELINED_ACTOR; default cli:<user>)",
    )
    _target_flags(add, read=True)
    elist = ecmd.add_parser("list", help="list change events, oldest first")
    elist.add_argument("--model", "-m", help="only this model")
    elist.add_argument("--environment", "-e", help="only this environment (and unscoped events)")
    elist.add_argument("--since", help="events from this long ago: 30m, 2h, 1d (default: all)")
    elist.add_argument(
        "--type", "-t", dest="types", action="append", default=[], choices=_EVENT_TYPES,
        help="only this type (repeatable)",
    )  # fmt: skip
    elist.add_argument("--limit", type=int, default=100, help="newest events to show (default 100)")
    _target_flags(elist, read=True)


def _auth_parser(commands: Any) -> None:
    auth = commands.add_parser("auth", help="helpers for principals and tokens")
    acmd = auth.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    acmd.add_parser(
        "hash-token",
        help="print the token_sha256 of a token read from stdin",
        description="Reads one token from stdin (not the command line: it would stay in the "
        "shell history) and prints the hex SHA-256 to put in the principals file.",
    )


def _cmd_auth_hash_token(args: argparse.Namespace) -> int:
    from sidecar.auth import hash_token

    token = sys.stdin.readline().strip()
    if not token:
        raise _UsageError(
            'no token on stdin (for example: printf %s "$TOKEN" | baselined auth hash-token)'
        )
    print(hash_token(token))
    return EXIT_OK


def _replay_parser(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay a JSON Lines file of samples, freezes and events on a simulated clock",
        description="Feeds FILE through the comparison engine on a simulated clock and writes "
        "every alert state change as one JSON line. Bad lines are reported with their line "
        "number and skipped (or stop the replay with --strict).",
    )
    replay.add_argument("file", metavar="FILE", help="JSON Lines input ('-' for stdin)")
    replay.add_argument("--config", help="guardrails TOML file (default: built-in guardrails)")
    replay.add_argument(
        "--check-interval",
        type=float,
        default=None,
        help="simulated seconds between checks (default: the config's, else 10)",
    )
    replay.add_argument("--out", "-o", default="-", help="output file (default: stdout)")
    replay.add_argument("--strict", action="store_true", help="stop at the first bad line")
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


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

    if args.token and args.token_file:
        raise _UsageError("give either --token or --token-file, not both")
    try:
        return Client(
            args.target,
            timeout=args.timeout,
            token=args.token or None,
            token_file=args.token_file or None,
            tls_ca=args.tls_ca or None,
            tls_cert=args.tls_cert or None,
            tls_key=args.tls_key or None,
        )
    except ValueError as err:
        raise _UsageError(str(err)) from None


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
    elif baseline.status != pb.BASELINE_STATUS_ACTIVE:  # four-eyes: waits for a second admin
        print(
            f"{baseline.id} ({baseline.name}) waits for approval by another admin"
            f" (four-eyes policy of {baseline.model}/{baseline.environment}):"
            f" baselined baselines approve {baseline.id} --reason ..."
        )
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
    """``baselines audit``: the same listing as ``audit list`` (kept as an alias)."""
    return _cmd_audit_list(args)


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


def _severity(value: int) -> str:
    if value == pb.SEVERITY_UNSPECIFIED:
        return "-"
    return pb.Severity.Name(value).removeprefix("SEVERITY_").lower()


def _alert_state(value: int) -> str:
    return pb.AlertState.Name(value).removeprefix("ALERT_STATE_").lower()


def _series_name(s: pb.SeriesFinding) -> str:
    name = s.signal
    if s.slice != "*":
        name += f"[{s.slice}]"
    if s.version and s.version != "*":
        name += f" v{s.version}"
    if s.phase:
        name += f" @{s.phase}"
    return name


def _cmd_alerts_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.alerts(
            model=args.model or "",
            environment=args.environment or "",
            include_resolved=args.all,
        )
    if args.json:
        _print_json(response)
        return EXIT_OK
    rows = [
        [
            a.fingerprint,
            _alert_state(a.state),
            _severity(a.severity),
            f"{a.model}/{a.environment}",
            ", ".join(_series_name(s) for s in a.series) or "-",
            _fmt_time(a.started_at),
            _fmt_time(a.resolved_at),
            a.summary,
        ]
        for a in response.alerts
    ]
    if not rows:
        print("no alerts" if args.all else "no firing alerts")
        return EXIT_OK
    print(
        _table(
            [
                "fingerprint",
                "state",
                "tier",
                "model/env",
                "series",
                "started",
                "resolved",
                "summary",
            ],
            rows,
        )
    )
    return EXIT_OK


def _cmd_alerts_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if not args.json:
            print(f"watching alerts at {args.target} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        for alert in client.watch_alerts(
            model=args.model or "",
            environment=args.environment or "",
            include_firing=args.include_firing,
        ):
            if args.json:
                print(json.dumps(_as_dict(alert), separators=(",", ":")), flush=True)
                continue
            when = alert.resolved_at or alert.updated_at
            line = (
                f"{_fmt_time(when)}  {_alert_state(alert.state).upper():8}  "
                f"{_severity(alert.severity):8}  {alert.summary}  [{alert.fingerprint}]"
            )
            if alert.playbook_url and alert.state == pb.ALERT_STATE_FIRING:
                line += f"  playbook: {alert.playbook_url}"
            print(line, flush=True)
    return EXIT_OK


def _effects_table(finding: pb.SeriesFinding) -> str:
    rows = [
        [
            "  " + e.name,
            _fmt_num(e.estimate),
            _fmt_num(e.lower),
            _fmt_num(e.upper),
            e.unit,
            _fmt_num(e.guardrail) if e.guardrail else "-",
            _severity(e.severity),
        ]
        for e in finding.effects
    ]
    return _table(["  effect", "estimate", "lower", "upper", "unit", "guardrail", "tier"], rows)


def _cmd_compare(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.compare(model=args.model, environment=args.environment)
    if args.json:
        _print_json(result)
        return EXIT_OK
    flagged = sum(1 for f in result.findings if f.severity != pb.SEVERITY_UNSPECIFIED)
    print(
        f"compare {result.model}/{result.environment} with baseline {result.baseline_id}  "
        f"live {_fmt_time(result.window_start)} .. {_fmt_time(result.window_end)}"
    )
    print(
        f"  {len(result.findings)} series, {flagged} beyond a guardrail; "
        f"alpha per test {result.alpha_per_test:.3g}; took {result.duration_seconds * 1000:.1f} ms"
    )
    for finding in result.findings:
        print()
        print(
            f"{_series_name(finding)} ({_kind(finding.kind)})  baseline n={finding.baseline_count}"
            f"  live n={finding.live_count}  tier: {_severity(finding.severity)}"
        )
        if finding.effects:
            print(_effects_table(finding))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from sidecar.demo import run_demo

    return run_demo(workdir=args.workdir, requests=args.requests)


def _cmd_replay(args: argparse.Namespace) -> int:
    from sidecar.guardrails import Guardrails
    from sidecar.replay import ReplayError, replay

    if args.check_interval is not None and not (
        math.isfinite(args.check_interval) and args.check_interval > 0
    ):
        raise _UsageError(f"--check-interval must be greater than 0, got {args.check_interval}")
    guardrails = Guardrails.load(args.config)
    interval = args.check_interval or guardrails.check_interval
    size = 0
    if args.file != "-":
        try:
            size = os.path.getsize(args.file)
        except OSError as err:
            raise _UsageError(f"cannot read {args.file}: {err.strerror}") from None
    show = sys.stderr.isatty() if args.progress is None else args.progress
    done = [0]

    def lines(handle: Any) -> Any:
        for line in handle:
            done[0] += len(line)
            yield line

    def progress(count: int) -> None:
        bar = ""
        if size:
            share = min(1.0, done[0] / size)
            filled = int(share * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} "
        sys.stderr.write(f"\rreplay {bar}{count:,} lines")
        sys.stderr.flush()

    reported = [0]

    def warn(number: int, reason: str) -> None:
        reported[0] += 1
        if reported[0] <= 20:
            print(f"baselined replay: line {number}: {reason} (skipped)", file=sys.stderr)
        elif reported[0] == 21:
            print("baselined replay: more bad lines; see the summary", file=sys.stderr)

    with contextlib.ExitStack() as stack:
        source: Any = sys.stdin
        if args.file != "-":
            source = stack.enter_context(open(args.file, encoding="utf-8", errors="replace"))
        out: Any = sys.stdout
        if args.out != "-":
            out = stack.enter_context(open(args.out, "w", encoding="utf-8"))
        try:
            summary = replay(
                lines(source),
                guardrails=guardrails,
                check_interval=interval,
                out=out,
                strict=args.strict,
                progress=progress if show else None,
                warn=warn,
            )
        except ReplayError as err:
            if show:
                sys.stderr.write("\n")
            print(f"baselined replay: {args.file}: {err} (--strict)", file=sys.stderr)
            return EXIT_REFUSED
    if show:
        sys.stderr.write("\n")
    print(summary.describe(), file=sys.stderr)
    return EXIT_OK


def _cmd_events_add(args: argparse.Namespace) -> int:
    try:
        when = parse_time(args.time) if args.time else time.time()
    except ValueError as err:
        raise _UsageError(f"--time: {err}") from None
    attributes: dict[str, str] = {}
    for item in args.attr:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"--attr must look like KEY=VALUE, got {item!r}")
        attributes[key] = value
    with _client(args) as client:
        event = client.record_event(
            args.type,
            args.model,
            time=when,
            environment=args.environment,
            version=args.version,
            node=args.node,
            image=args.image,
            custom_type=args.custom_type,
            attributes=attributes,
            actor=args.actor,
            source="cli",
        )
    if args.json:
        _print_json(event)
    else:
        print(
            f"recorded {_event_name(event)} {event.id} for {event.model} at {_fmt_time(event.time)}"
        )
    return EXIT_OK


def _event_name(event: pb.Event) -> str:
    if event.type == pb.EVENT_TYPE_CUSTOM:
        return f"custom:{event.custom_type}"
    return pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_").lower()


def _list_start(args: argparse.Namespace) -> float:
    """Check ``--limit`` and turn ``--since`` (a duration) into a start time (0: all)."""
    if args.limit <= 0:
        raise _UsageError("--limit must be greater than 0")
    try:
        return time.time() - parse_duration(args.since) if args.since else 0.0
    except ValueError as err:
        raise _UsageError(f"--since: {err}") from None


def _cmd_events_list(args: argparse.Namespace) -> int:
    start = _list_start(args)
    with _client(args) as client:
        response = client.events(
            model=args.model or "",
            environment=args.environment or "",
            start=start,
            types=args.types,
            limit=args.limit,
        )
    if args.json:
        _print_json(response)
        return EXIT_OK
    if not response.events:
        print("no events")
        return EXIT_OK
    rows = [
        [
            _fmt_time(e.time),
            _event_name(e),
            f"{e.model}/{e.environment or '*'}",
            " ".join(
                f"{k}={v}"
                for k, v in (("version", e.version), ("node", e.node), ("image", e.image))
                if v
            )
            or "-",
            e.recorded_by or "-",
            e.source,
            e.id,
        ]
        for e in response.events
    ]
    print(_table(["time", "type", "model/env", "scope", "recorded by", "via", "id"], rows))
    return EXIT_OK


# -- impact reports (issue 4) ----------------------------------------------------

_VERDICTS = ["no_change", "regression", "inconclusive", "pending"]


def _impact_parser(commands: Any) -> None:
    impact = commands.add_parser(
        "impact",
        help="before/after impact reports of change events",
        description="Every change event starts a before/after comparison of its scope; "
        "its verdict is no_change, regression, inconclusive (or pending while it collects "
        "samples). See docs/events.md#impact-reports.",
    )
    icmd = impact.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    ilist = icmd.add_parser("list", help="list impact reports, oldest event first")
    ilist.add_argument("--model", "-m", help="only this model")
    ilist.add_argument("--environment", "-e", help="only this environment")
    ilist.add_argument("--since", help="reports of events from this long ago: 30m, 2h, 1d")
    ilist.add_argument(
        "--verdict", dest="verdicts", action="append", default=[], choices=_VERDICTS,
        help="only this verdict (repeatable)",
    )  # fmt: skip
    ilist.add_argument("--limit", type=int, default=100, help="newest reports (default 100)")
    _target_flags(ilist, read=True)
    show = icmd.add_parser("show", help="show one impact report with its effects and bounds")
    show.add_argument("id", help="report id (im-..., from 'baselined impact list')")
    _target_flags(show, read=True)


def _verdict(value: int) -> str:
    return pb.ImpactVerdict.Name(value).removeprefix("IMPACT_VERDICT_").lower()


def _cmd_impact_list(args: argparse.Namespace) -> int:
    start = _list_start(args)
    with _client(args) as client:
        response = client.impact_reports(
            model=args.model or "",
            environment=args.environment or "",
            start=start,
            verdicts=args.verdicts,
            limit=args.limit,
        )
    if args.json:
        _print_json(response)
        return EXIT_OK
    if not response.reports:
        print("no impact reports")
        return EXIT_OK
    rows = [
        [
            _fmt_time(r.event.time),
            _event_name(r.event),
            f"{r.model}/{r.environment}",
            _verdict(r.verdict),
            f"{r.samples_before:,}/{r.samples_after:,}",
            r.id,
        ]
        for r in response.reports
    ]
    print(_table(["event time", "event", "model/env", "verdict", "before/after", "id"], rows))
    return EXIT_OK


def _cmd_impact_show(args: argparse.Namespace) -> int:
    if not args.id.strip():
        raise _UsageError("give a report id (im-...); 'baselined impact list' shows them")
    with _client(args) as client:
        report = client.impact_report(args.id.strip())
    if args.json:
        _print_json(report)
        return EXIT_OK
    print(f"impact report {report.id}: {_verdict(report.verdict)}")
    print(f"  {report.summary}")
    event = report.event
    print(
        f"  event {event.id}: {_event_name(event)} at {_fmt_time(event.time)}"
        f" ({event.recorded_by or '-'} via {event.source or '-'})"
    )
    scope = ", ".join(f"{k}={v}" for k, v in sorted(report.scope.items())) or "-"
    print(f"  scope {scope}" + (f" ({report.scope_note})" if report.scope_note else ""))
    print(
        f"  before {_fmt_time(report.before_start)} .. {_fmt_time(report.before_end)}:"
        f" {report.samples_before:,} samples; after {_fmt_time(report.after_start)} .."
        f" {_fmt_time(report.after_end)}: {report.samples_after:,} samples"
    )
    if report.samples_needed:
        print(f"  about {report.samples_needed:,} more samples needed for a verdict")
    if report.alert_fingerprint:
        print(f"  alert {report.alert_fingerprint}")
    rows = [
        [
            e.signal + (f"[{e.slice}]" if e.slice != "*" else ""),
            e.effect,
            _fmt_num(e.estimate),
            f"[{_fmt_num(e.lower)}, {_fmt_num(e.upper)}]",
            f"{e.guardrail:g} ({e.direction})",
            f"{e.margin:g}",
            _severity(e.severity) if e.severity else ("inside" if e.within else "-"),
        ]
        for e in report.effects
    ]
    if rows:
        print()
        print(
            _table(
                [
                    "series",
                    "effect",
                    "estimate",
                    "interval",
                    "minor guardrail",
                    "margin",
                    "verdict",
                ],
                rows,
            )
        )
    return EXIT_OK


# -- baselines export / import / diff --------------------------------------------


def _transfer_parsers(bcmd: Any) -> None:
    export = bcmd.add_parser(
        "export",
        help="write a baseline to a self-describing file (format version, provenance, states, hash)",
        description="Export a baseline as a JSON file with a content hash (docs/governance.md); "
        "'baselines import' verifies it and stores it as a candidate in another environment or store.",
    )
    export.add_argument("id", help="baseline id (see 'baselines list')")
    export.add_argument("--out", "-o", help="file to write (default: standard output)")
    _target_flags(export, read=False)

    imp = bcmd.add_parser(
        "import",
        help="verify an exported baseline file and store it as a new candidate (audited)",
        description="Refuses a file whose content hash does not match, of an unknown format "
        "version, or malformed; nothing is stored then.",
    )
    imp.add_argument("file", help="exported baseline file ('-': standard input)")
    imp.add_argument("--environment", "-e", default="", help="environment (default: the file's)")
    imp.add_argument("--name", "-n", default="", help="baseline name (default: the file's)")
    _actor_flags(imp, reason_required=False)
    _target_flags(imp, read=True)

    diff = bcmd.add_parser(
        "diff",
        help="compare baseline B with baseline A series by series (effects, tiers)",
        description="Every effect of every shared series of B against A (the reference), with "
        "confidence bounds and the tier it clears, plus the series only one of them holds.",
    )
    diff.add_argument("a", help="reference baseline id")
    diff.add_argument("b", help="baseline id compared with A")
    diff.add_argument(
        "--effects", action="store_true", help="print every effect of every series, not only tiers"
    )
    _target_flags(diff, read=True)


def _cmd_export(args: argparse.Namespace) -> int:
    with _client(args) as client:
        content = client.export_baseline(args.id)
    if not args.out or args.out == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return EXIT_OK
    try:
        with open(args.out, "wb") as handle:
            handle.write(content)
    except OSError as err:
        raise _UsageError(f"cannot write {args.out}: {err.strerror}") from err
    print(f"exported {args.id} to {args.out} ({len(content)} bytes)", file=sys.stderr)
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            content = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as handle:
                content = handle.read()
    except OSError as err:
        raise _UsageError(f"cannot read {args.file}: {err.strerror}") from err
    with _client(args) as client:
        baseline = client.import_baseline(
            content,
            environment=args.environment,
            name=args.name,
            reason=args.reason,
            actor=args.actor,
        )
    if args.json:
        _print_json(baseline)
    else:
        print(f"imported as candidate {baseline.id}")
        _print_baseline(baseline)
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.diff_baselines(args.a, args.b)
    if args.json:
        _print_json(result)
        return EXIT_OK
    flagged = [f for f in result.findings if f.severity != pb.SEVERITY_UNSPECIFIED]
    print(f"diff {result.b} against {result.a}")
    print(
        f"  {len(result.findings)} shared series, {len(flagged)} beyond a guardrail; "
        f"{len(result.only_in_a)} only in {result.a}, {len(result.only_in_b)} only in {result.b}"
    )
    for label, names in ((result.a, result.only_in_a), (result.b, result.only_in_b)):
        for name in names:
            print(f"  only in {label}: {name}")
    if not flagged and not result.only_in_a and not result.only_in_b:
        print("no differences beyond the guardrails")
    for finding in result.findings if args.effects else flagged:
        fired = [e for e in finding.effects if e.severity != pb.SEVERITY_UNSPECIFIED]
        print()
        print(
            f"{_series_name(finding)} ({_kind(finding.kind)})  A n={finding.baseline_count}"
            f"  B n={finding.live_count}  tier: {_severity(finding.severity)}"
        )
        if args.effects and finding.effects:
            print(_effects_table(finding))
        elif fired:
            shown = pb.SeriesFinding(effects=fired)
            print(_effects_table(shown))
    return EXIT_OK


# -- governance: four-eyes approvals, policies, the audit log ----------------------


def _governance_parsers(commands: Any, bcmd: Any) -> None:
    approve = bcmd.add_parser(
        "approve",
        help="approve a candidate: it becomes active (four-eyes; audited)",
        description="Activates the baseline on behalf of a second admin. Refused when you "
        "froze the baseline or asked to promote it, and for a retired baseline.",
    )
    approve.add_argument("id")
    _actor_flags(approve, reason_required=True)
    _target_flags(approve, read=True)
    pending = bcmd.add_parser("pending", help="list promotions waiting for approval")
    _model_flags(pending, required=False)
    _target_flags(pending, read=True)

    policy = commands.add_parser("policy", help="show or set a model's four-eyes policy and owners")
    pcmd = policy.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    show = pcmd.add_parser("show", help="show the policy of a model and environment")
    _model_flags(show)
    _target_flags(show, read=True)
    pset = pcmd.add_parser(
        "set",
        help="set the policy of a model and environment (audited)",
        description="Flags left out keep their current value; --owner replaces the owners "
        "(give --no-owners to clear them).",
    )
    _model_flags(pset)
    pset.add_argument(
        "--four-eyes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="promotions need a second admin's approval",
    )
    pset.add_argument(
        "--owner",
        dest="owners",
        action="append",
        default=None,
        help="owner: principal or team (repeatable)",
    )
    pset.add_argument("--no-owners", action="store_true", help="remove every owner")
    _actor_flags(pset, reason_required=False)
    _target_flags(pset, read=True)

    audit = commands.add_parser("audit", help="list and verify the tamper-evident audit log")
    acmd = audit.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    alist = acmd.add_parser("list", help="list audit entries, oldest first")
    _model_flags(alist, required=False)
    alist.add_argument(
        "--limit", type=int, default=100, help="newest entries to show (default 100)"
    )
    _target_flags(alist, read=True)
    verify = acmd.add_parser(
        "verify",
        help="check the audit hash chains; exit 1 naming the first bad record",
        description="Detects an edited, deleted or reordered audit record and says where.",
    )
    verify.add_argument("--model", "-m", help="only the chain holding this model")
    _target_flags(verify, read=True)


def _cmd_approve(args: argparse.Namespace) -> int:
    with _client(args) as client:
        baseline = client.approve(args.id, reason=args.reason, actor=args.actor)
    if args.json:
        _print_json(baseline)
    else:
        print(
            f"approved: {baseline.id} ({baseline.name}) is now active for"
            f" {baseline.model}/{baseline.environment}"
        )
    return EXIT_OK


def _cmd_pending(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.pending(model=args.model or "", environment=args.environment or "")
    if args.json:
        _print_json(response)
        return EXIT_OK
    if not response.pending:
        print("no promotions wait for approval")
        return EXIT_OK
    rows = [
        [
            p.baseline_id,
            f"{p.model}/{p.environment}",
            p.requested_by,
            _fmt_time(p.requested_at),
            p.reason,
        ]
        for p in response.pending
    ]
    print(_table(["baseline", "model/env", "requested by", "requested", "reason"], rows))
    return EXIT_OK


def _print_policy(policy: pb.Policy) -> None:
    print(f"policy of {policy.model}/{policy.environment}")
    print(f"  four-eyes: {'on' if policy.four_eyes else 'off'}")
    print(f"  owners:    {', '.join(policy.owners) or '-'}")


def _cmd_policy_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        policy = client.get_policy(args.model, args.environment)
    if args.json:
        _print_json(policy)
    else:
        _print_policy(policy)
    return EXIT_OK


def _cmd_policy_set(args: argparse.Namespace) -> int:
    if args.no_owners and args.owners:
        raise _UsageError("give either --owner or --no-owners, not both")
    with _client(args) as client:
        current = client.get_policy(args.model, args.environment)
        four_eyes = current.four_eyes if args.four_eyes is None else args.four_eyes
        owners = list(current.owners) if args.owners is None else args.owners
        policy = client.set_policy(
            args.model,
            args.environment,
            four_eyes=four_eyes,
            owners=[] if args.no_owners else owners,
            reason=args.reason,
            actor=args.actor,
        )
    if args.json:
        _print_json(policy)
    else:
        _print_policy(policy)
    return EXIT_OK


def _cmd_audit_list(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise _UsageError("--limit must be greater than 0")
    with _client(args) as client:
        response = client.audit(
            model=args.model or "", environment=args.environment or "", limit=args.limit
        )
    if args.json:
        _print_json(response)
        return EXIT_OK
    if not response.entries:
        print("no audit entries")
        return EXIT_OK
    rows = [
        [
            str(e.seq),
            _fmt_time(e.time),
            e.actor,
            e.action,
            f"{e.model}/{e.environment}" if e.model else "-",
            e.target,
            e.reason,
            e.hash[:12] or "-",
        ]
        for e in response.entries
    ]
    print(_table(["seq", "time", "actor", "action", "model/env", "target", "reason", "hash"], rows))
    return EXIT_OK


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.verify_audit(model=args.model or "")
    if args.json:
        _print_json(result)
    elif result.ok:
        print(f"audit log verified: {result.checked} entries, every hash chain intact")
    else:
        print(f"baselined: audit log BROKEN: {result.problem}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_REFUSED


_COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("serve", None): _cmd_serve,
    ("replay", None): _cmd_replay,
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
    ("alerts", "list"): _cmd_alerts_list,
    ("alerts", "watch"): _cmd_alerts_watch,
    ("compare", None): _cmd_compare,
    ("events", "add"): _cmd_events_add,
    ("events", "list"): _cmd_events_list,
    ("impact", "list"): _cmd_impact_list,
    ("impact", "show"): _cmd_impact_show,
    ("baselines", "approve"): _cmd_approve,
    ("baselines", "pending"): _cmd_pending,
    ("policy", "show"): _cmd_policy_show,
    ("policy", "set"): _cmd_policy_set,
    ("audit", "list"): _cmd_audit_list,
    ("audit", "verify"): _cmd_audit_verify,
    ("auth", "hash-token"): _cmd_auth_hash_token,
    ("baselines", "export"): _cmd_export,
    ("baselines", "import"): _cmd_import,
    ("baselines", "diff"): _cmd_diff,
    ("outcomes", "load"): outcomes_cli.cmd_outcomes_load,
    ("quality", "show"): outcomes_cli.cmd_quality_show,
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
