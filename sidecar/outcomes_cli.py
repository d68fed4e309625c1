"""``baselined outcomes load`` and ``baselined quality show`` (issue 8; ``docs/outcomes.md``).

``outcomes load FILE`` reads a CSV file (header row with ``request_id`` and
``label``; optional ``model``, ``time``, ``weight``) or JSON Lines (one object
per line with the same keys; ``.jsonl``/``.ndjson`` or ``--format jsonl``) and
streams the outcomes to the sidecar in batches, printing progress and, at the
end, the counts (joined, unknown, expired, duplicate, invalid) with reasons.
Lines that cannot be read are counted as invalid here, named with their line
number (the first ten), and never sent.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from baselined.v1 import baselined_pb2 as pb

__all__ = ["add_parsers", "cmd_outcomes_load", "cmd_quality_show", "parse_label"]

_BATCH = 1000
_PROGRESS_EVERY = 10_000
_SHOWN_PROBLEMS = 10


def add_parsers(commands: Any, target_flags: Any) -> None:
    """Add the ``outcomes`` and ``quality`` commands to the CLI's subparsers."""
    outcomes = commands.add_parser(
        "outcomes",
        help="send outcomes (labels) of sampled requests",
        description="Outcomes are joined to the predictions the sidecar kept for sampled "
        "requests with a request id. See docs/outcomes.md.",
    )
    ocmd = outcomes.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    load = ocmd.add_parser(
        "load",
        help="backfill outcomes from a CSV or JSON Lines file",
        description="Each row: request_id, label (class index, class name or value), "
        "and optionally model, time (unix seconds) and weight. Prints progress and the "
        "counts with reasons; bad rows are counted, never fatal.",
    )
    load.add_argument("file", help="CSV (with a header row) or JSON Lines file; - for stdin")
    load.add_argument("--model", "-m", default="", help="model of rows that name none")
    load.add_argument(
        "--format", choices=["auto", "csv", "jsonl"], default="auto",
        help="file format (default: by extension, .jsonl/.ndjson are JSON Lines)",
    )  # fmt: skip
    target_flags(load, read=True)
    quality = commands.add_parser(
        "quality",
        help="model quality from joined outcomes",
        description="Error rate, calibration (ECE), Brier score, AUC and the CBPE estimate "
        "of the live window against the active baseline, per slice. See docs/outcomes.md.",
    )
    qcmd = quality.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    show = qcmd.add_parser("show", help="per-slice quality of a model against its baseline")
    show.add_argument("--model", "-m", required=True, help="model name")
    show.add_argument(
        "--environment", "-e", default="production", help="environment (default production)"
    )
    show.add_argument(
        "--reliability", action="store_true", help="also print the reliability diagram of '*'"
    )
    target_flags(show, read=True)


def parse_label(text: str) -> int | float | str:
    """A label from text: an integer, else a number, else a class name."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _record(row: dict[str, Any], default_model: str, line: int) -> pb.OutcomeRecord:
    model = row.get("model") or default_model
    if not isinstance(model, str) or not model:
        raise ValueError("no model (give a model column/key or --model)")
    rid = row.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise ValueError("no request_id")
    if "label" not in row or row["label"] is None or row["label"] == "":
        raise ValueError("no label")
    label = row["label"]
    if isinstance(label, str) and not isinstance(row.get("_json"), bool):
        label = parse_label(label)
    record = pb.OutcomeRecord(model=model, request_id=rid)
    if isinstance(label, bool):
        record.class_index = int(label)
    elif isinstance(label, int):
        record.class_index = label
    elif isinstance(label, float):
        record.value = label
    elif isinstance(label, str):
        record.class_name = label
    else:
        raise ValueError(f"label {label!r} is not a class, a number or a class name")
    for key in ("time", "weight"):
        value = row.get(key)
        if value in (None, ""):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} {value!r} is not a number") from None
        if not math.isfinite(number) or (key == "weight" and number <= 0):
            raise ValueError(
                f"{key} {value!r} must be a finite{' positive' if key == 'weight' else ''} number"
            )
        setattr(record, key, number)
    return record


def _rows(path: str, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row or the reason it could not be read)."""
    if fmt == "auto":
        fmt = "jsonl" if Path(path).suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"
    stream = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8")  # noqa: SIM115
    with stream:
        if fmt == "jsonl":
            for number, text in enumerate(stream, 1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except ValueError as err:
                    yield number, f"not JSON: {err}"
                    continue
                if not isinstance(obj, dict):
                    yield number, "not a JSON object"
                    continue
                if obj.get("kind", "outcome") != "outcome":
                    yield number, f"kind {obj.get('kind')!r} is not outcome"
                    continue
                obj["_json"] = True
                yield number, obj
            return
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or not {"request_id", "label"} <= set(reader.fieldnames):
            raise ValueError("the CSV header must name request_id and label columns")
        for row in reader:
            if None in row:
                yield reader.line_num, "more fields than the header names"
                continue
            yield reader.line_num, dict(row)


def cmd_outcomes_load(args: argparse.Namespace) -> int:
    from sidecar import cli

    if args.file != "-" and not Path(args.file).is_file():
        raise cli._UsageError(f"{args.file} is not a file")
    local = Counter[str]()
    shown: list[str] = []
    read = 0

    def batches() -> Iterator[pb.OutcomeBatch]:
        nonlocal read
        batch = pb.OutcomeBatch()
        try:
            for number, row in _rows(args.file, args.format):
                read += 1
                if read % _PROGRESS_EVERY == 0:
                    print(f"{read:,} rows read", file=sys.stderr)
                try:
                    if isinstance(row, str):
                        raise ValueError(row)
                    batch.outcomes.append(_record(row, args.model, number))
                except ValueError as err:
                    local[str(err)] += 1
                    if len(shown) < _SHOWN_PROBLEMS:
                        shown.append(f"line {number}: {err}")
                    continue
                if len(batch.outcomes) >= _BATCH:
                    yield batch
                    batch = pb.OutcomeBatch()
        except ValueError as err:
            local[f"unreadable file: {err}"] += 1
            shown.append(str(err))
        if batch.outcomes:
            yield batch

    with cli._client(args) as client:
        response = client.record_outcomes(batches())
    for problem in shown:
        print(f"baselined: skipped {problem}", file=sys.stderr)
    for reason, n in local.items():
        response.invalid += n
        response.reasons.add(reason=reason, count=n)
    if args.json:
        cli._print_json(response)
        return cli.EXIT_OK
    print(
        f"{read:,} rows: {response.joined:,} joined, {response.unknown:,} unknown,"
        f" {response.expired:,} expired, {response.duplicate:,} duplicate,"
        f" {response.invalid:,} invalid"
    )
    for reason in sorted(response.reasons, key=lambda r: -r.count)[:20]:
        print(f"  {reason.count:>8,}  {reason.reason}")
    return cli.EXIT_OK


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}%"


def _bound(effect: pb.Effect | None) -> str:
    if effect is None or math.isnan(effect.estimate):
        return "-"
    return f"{effect.estimate:+.4f} [{effect.lower:+.4f}, {effect.upper:+.4f}]"


def _diverged(realized: pb.Effect | None, estimated: pb.Effect) -> bool:
    """The realized error-rate shift's interval misses the estimated one's (as
    ``sidecar.quality_view.estimate_diverged``)."""
    if realized is None:
        return False
    numbers = (realized.lower, realized.upper, estimated.lower, estimated.upper)
    if any(math.isnan(x) for x in numbers):
        return False
    return realized.lower > estimated.upper or realized.upper < estimated.lower


def cmd_quality_show(args: argparse.Namespace) -> int:
    from sidecar import cli

    with cli._client(args) as client:
        view = client.quality(args.model, args.environment)
    if args.json:
        cli._print_json(view)
        return cli.EXIT_OK
    against = f"baseline {view.baseline_id}" if view.baseline_id else "no active baseline"
    print(
        f"quality of {view.model}/{view.environment} from {cli._fmt_time(view.window_start)}"
        f" to {cli._fmt_time(view.window_end)} against {against}"
    )
    if not view.slices:
        print("no labelled or sampled predictions yet (send outcomes: docs/outcomes.md)")
        return cli.EXIT_OK
    rows = []
    for s in view.slices:
        effects = {e.name: e for e in s.effects}
        estimate = s.cbpe
        cbpe = (
            "-"
            if math.isnan(estimate.expected_error)
            else f"~{_pct(estimate.expected_error)} [{_pct(estimate.lower)}, {_pct(estimate.upper)}]"
        )
        check = s.cbpe_check
        if check.has_realized and check.diverged:
            cbpe += " DIVERGED"
        estimated = effects.get("estimated_error_rate_shift")
        estimated_shift = "-" if estimated is None else _bound(estimated)
        if estimated is not None and estimated_shift != "-":
            estimated_shift = "~" + estimated_shift
            if _diverged(effects.get("error_rate_shift"), estimated):
                estimated_shift += " DIVERGED"
        rows.append(
            [
                s.slice,
                f"{s.count:,.0f}",
                _pct(s.error_rate),
                _bound(effects.get("error_rate_shift")),
                cli._fmt_num(s.ece),
                _bound(effects.get("ece_shift")),
                cli._fmt_num(s.brier),
                cli._fmt_num(s.auc),
                cbpe,
                estimated_shift,
            ]
        )
    headers = [
        "slice", "labelled", "error", "error shift", "ECE", "ECE shift", "Brier", "AUC",
        "CBPE estimate (all sampled)", "estimated error shift",
    ]  # fmt: skip
    print(cli._table(headers, rows))
    if any(r[-1].endswith("DIVERGED") for r in rows):
        print(
            "DIVERGED estimated error shift: the labels that landed contradict CBPE's estimate"
            " (the confidences' calibration changed); trust the realized error shift"
        )
    for gap in view.fairness:
        baseline = (
            ""
            if math.isnan(gap.baseline_estimate)
            else f"; baseline gap {cli._fmt_num(gap.baseline_estimate)}"
            f" [{cli._fmt_num(gap.baseline_lower)}, {cli._fmt_num(gap.baseline_upper)}],"
            f" shift {_bound(gap.shift)}"
        )
        print(
            f"fairness {gap.attribute} {gap.metric}: worst {gap.worst or '-'}, best"
            f" {gap.best or '-'}, gap {cli._fmt_num(gap.estimate)}"
            f" [{cli._fmt_num(gap.lower)}, {cli._fmt_num(gap.upper)}]{baseline}"
        )
    if args.reliability:
        everything = next((s for s in view.slices if s.slice == "*"), None)
        if everything is not None:
            print("reliability (*, fixed bins): lo..hi  count  confidence  accuracy")
            for b in everything.reliability:
                if b.count:
                    print(
                        f"  {b.lo:.3f}..{b.hi:.3f}  {b.count:8,.0f}  {b.mean_confidence:.3f}"
                        f"  {b.accuracy:.3f}"
                    )
    return cli.EXIT_OK
