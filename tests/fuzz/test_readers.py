"""Fuzzing the other readers of untrusted input: the replay reader (JSON lines),
the CloudEvents endpoint (a real aiohttp app on loopback, structured and binary
mode), and the config loaders (guardrails TOML, settings file and environment).

Properties: only the documented errors (``ReplayError`` in strict mode, none
otherwise; HTTP 201 / 400 / 413 / 415, never 5xx; ``ConfigError``), and a
refused event changes nothing in the store.
"""

from __future__ import annotations

import io
import json
import math
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import ConfigError
from sidecar.events import EventLog
from sidecar.guardrails import Guardrails
from sidecar.http import HttpListener
from sidecar.replay import ReplayError, replay
from sidecar.settings import Settings
from sidecar.stores import SQLiteStore
from tests.fuzz.conftest import budget, tried
from tests.sidecar.test_http import Loop

NOW = 1_700_000_000.0

# -- replay ------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
KINDS = ["sample", "outcome", "freeze", "event", "nope"]


@st.composite
def replay_objects(draw: st.DrawFn) -> Any:
    """Objects near the valid lines: a kind, a time, a model, fields of any type."""
    obj: dict[str, Any] = {
        "kind": draw(st.one_of(st.sampled_from(KINDS), json_values)),
        "time": draw(
            st.one_of(
                st.floats(min_value=0, max_value=1e6),
                st.sampled_from([-1.0, 1e300, "1", None]),
                json_values,
            )
        ),
        "model": draw(st.one_of(st.sampled_from(["m", "", "a" * 300, "x\x00"]), json_values)),
    }
    for key in draw(
        st.lists(
            st.sampled_from(
                [
                    "signals",
                    "signal_kinds",
                    "attributes",
                    "version",
                    "environment",
                    "request_id",
                    "label",
                    "weight",
                    "name",
                    "type",
                    "fingerprint",
                ]
            ),
            max_size=5,
        )
    ):
        if key == "signals":
            obj[key] = draw(
                st.one_of(
                    st.dictionaries(
                        st.sampled_from(["x", "y", "", "z" * 300]),
                        st.one_of(
                            st.floats(allow_nan=False, allow_infinity=False),
                            st.text(max_size=4),
                            json_values,
                        ),
                        max_size=3,
                    ),
                    json_values,
                )
            )
        else:
            obj[key] = draw(json_values)
    return obj


bad_lines = st.one_of(
    replay_objects().map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.sampled_from(["", "{", "[]", "null", "NaN", '{"kind": "sample", "time": Infinity}']),
)


@st.composite
def replay_files(draw: st.DrawFn) -> list[str]:
    """Valid sample, freeze and event lines in time order, with bad lines mixed in."""
    out: list[str] = []
    t = 0.0
    for _ in range(draw(st.integers(1, 14))):
        t += draw(st.floats(min_value=0, max_value=30))
        kind = draw(st.integers(0, 9))
        if kind < 5:
            signals = {"x": draw(st.floats(-10, 10)), "c": draw(st.sampled_from(["a", "b"]))}
            obj: dict[str, Any] = {"kind": "sample", "time": t, "model": "m", "signals": signals}
            if draw(st.booleans()):
                obj["attributes"] = {"region": draw(st.sampled_from(["eu", "us"]))}
            out.append(json.dumps(obj))
        elif kind == 5:
            out.append(
                json.dumps({"kind": "freeze", "time": t, "model": "m", "name": f"b{len(out)}"})
            )
        elif kind == 6:
            out.append(json.dumps({"kind": "event", "time": t, "model": "m", "type": "deploy"}))
        else:
            out.append(draw(bad_lines))
    return out


@budget(120)
@given(replay_files())
def test_replay_reader_counts_bad_lines_and_never_crashes(batch: list[str]) -> None:
    tried("replay: random JSON lines (lenient and strict)")
    guardrails = Guardrails.load(None)
    summary = replay(batch, guardrails=guardrails, out=io.StringIO(), impact=None)
    assert summary.bad_lines <= len(batch)
    tried(f"  replay: {'some' if summary.bad_lines else 'no'} bad lines")
    try:
        replay(batch, guardrails=guardrails, out=io.StringIO(), strict=True, impact=None)
    except ReplayError as err:
        tried("  replay: strict mode refused a line")
        assert 1 <= err.line <= len(batch)
        assert summary.bad_lines >= 1  # strict refuses only what lenient mode counted bad
    else:
        assert summary.bad_lines == 0


# -- CloudEvents endpoint ----------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SQLiteStore]]:
    store = SQLiteStore(str(tmp_path_factory.mktemp("fuzz") / "events.db"), clock=lambda: NOW)
    events = EventLog(store, clock=lambda: NOW)
    loop = Loop()

    async def make() -> HttpListener:
        listener = HttpListener("127.0.0.1:0", kserve=None, events=events, max_body=4096)
        await listener.start()
        return listener

    listener = loop.run(make())
    yield f"http://127.0.0.1:{listener.port}/v1/events", store
    loop.run(listener.stop())
    loop.close()
    store.close()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        with err:
            err.read()
            return int(err.code)


header_text = st.text(alphabet=string.ascii_letters + string.digits + " -_.:/+=;,", max_size=30)
ce_types = st.one_of(
    st.sampled_from(
        ["dev.baselined.deploy", "dev.baselined.config_change", "com.example.other", "", "deploy"]
    ),
    header_text,
)
times = st.one_of(
    st.sampled_from(
        ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20+00:00", "yesterday", "", "9999-99-99"]
    ),
    header_text,
)


def _mix(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``good`` (5 in 6), sometimes ``bad``."""
    return st.integers(0, 5).flatmap(lambda i: bad if i == 0 else good)


def _pick(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly ``good`` (5 in 6), so that many events get past the first checks."""
    return draw(bad) if draw(st.integers(0, 5)) == 0 else draw(good)


@st.composite
def cloudevents(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    data = _pick(
        draw,
        st.fixed_dictionaries(
            {"model": _mix(st.just("m"), st.sampled_from(["", "x" * 300, "a\x00"]))},
            optional={
                "environment": _mix(st.just("prod"), st.text(max_size=5)),
                "version": _mix(st.just("v2"), json_values),
                "attributes": _mix(
                    st.dictionaries(st.sampled_from(["pr", "sha"]), st.text(max_size=5)),
                    json_values,
                ),
            },
        ),
        json_values,
    )
    attrs = {
        "specversion": _pick(draw, st.just("1.0"), st.sampled_from(["0.3", "", "2"])),
        "type": _pick(
            draw, st.sampled_from(["dev.baselined.deploy", "deploy", "com.example.x"]), ce_types
        ),
        "source": _pick(draw, st.just("ci"), st.sampled_from(["", "/deploy"])),
        "id": _pick(draw, st.sampled_from(["e1", "e2"]), header_text),
        "time": _pick(
            draw, st.sampled_from(["2023-11-14T22:13:20Z", "2023-11-14T21:00:00+00:00"]), times
        ),
    }
    attrs = {k: v for k, v in attrs.items() if draw(st.integers(0, 9)) > 0}
    if draw(st.booleans()):  # structured mode
        envelope: Any = {**attrs, "data": data}
        if draw(st.integers(0, 5)) == 0:
            envelope = draw(json_values)
        body = json.dumps(envelope).encode()
        ctype = _pick(
            draw,
            st.just("application/cloudevents+json"),
            st.sampled_from(
                ["application/json", "text/plain", "application/cloudevents-batch+json"]
            ),
        )
        return body, {"Content-Type": ctype}
    headers = {f"ce-{k}": v for k, v in attrs.items()}
    headers["Content-Type"] = _pick(
        draw, st.just("application/json"), st.sampled_from(["text/plain", "application/xml", ""])
    )
    body = _pick(draw, st.just(json.dumps(data).encode()), st.binary(max_size=60))
    return body, headers


def _events_in(store: SQLiteStore) -> list[Any]:
    return [e.id for e in store.list_events(None, None, -math.inf, math.inf, 10_000)]


@budget(200)
@given(
    st.one_of(
        cloudevents(),
        st.tuples(
            st.binary(max_size=80), st.just({"Content-Type": "application/cloudevents+json"})
        ),
    )
)
def test_cloudevents_endpoint_answers_a_clear_status(
    endpoint: tuple[str, SQLiteStore], request_: tuple[bytes, dict[str, str]]
) -> None:
    tried("CloudEvents endpoint: structured and binary mode")
    url, store = endpoint
    body, headers = request_
    before = _events_in(store)
    status = _post(url, body, headers)
    tried(f"  CloudEvents endpoint: answered {status}")
    # 200: a repeat of a stored (source, id); 409: the same id with other content
    assert status in (200, 201, 400, 409, 413, 415), status
    after = _events_in(store)
    if status == 201:
        assert len(after) == len(before) + 1
    else:
        assert after == before


def test_an_oversized_event_body_is_413(endpoint: tuple[str, SQLiteStore]) -> None:
    tried("CloudEvents endpoint: oversized body")
    url, store = endpoint
    before = _events_in(store)
    assert _post(url, b"{" + b" " * 8000 + b"}", {"Content-Type": "application/json"}) == 413
    assert _events_in(store) == before


# -- config loaders ----------------------------------------------------------------

toml_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.sampled_from(['"x"', "true", "[]", "{}", '"0.5"', "-1", "0", "1e400", "nan", '""']),
)
guardrail_keys = [
    "alpha",
    "consecutive",
    "resolve_after",
    "cooldown",
    "max_epoch_age",
    "check_interval",
    "playbook_url",
    "bogus",
]
guardrail_tables = [
    "",
    "[feature]",
    "[latency]",
    "[models.m]",
    "[models.m.signals.x]",
    "[feature.ks]",
    "[[x]]",
]


@st.composite
def guardrails_toml(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        out.append(draw(st.sampled_from(guardrail_tables)))
        for key in draw(
            st.lists(
                st.sampled_from(
                    [*guardrail_keys, "minor", "moderate", "severe", "effect", "direction"]
                ),
                max_size=3,
            )
        ):
            out.append(f"{key} = {draw(toml_values)}")
    text = "\n".join(out)
    if draw(st.booleans()):
        text += draw(st.text(max_size=20))
    return text


@budget(200)
@given(guardrails_toml())
def test_guardrails_loader_raises_only_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    tried("guardrails TOML loader")
    path = tmp_path_factory.getbasetemp() / "guardrails.toml"
    path.write_text(text)
    try:
        g = Guardrails.load(path)
    except ConfigError as err:
        tried("  guardrails TOML loader: ConfigError")
        assert str(err)
    else:
        tried("  guardrails TOML loader: loaded")
        assert 0 < g.alpha < 1


setting_names = [
    "bucket_seconds",
    "flush_interval",
    "retention_seconds",
    "max_series",
    "alpha",
    "log_level",
    "listen",
    "store",
    "reflection",
    "compression",
    "nope",
]


@budget(200)
@given(
    st.dictionaries(
        st.sampled_from(setting_names), st.one_of(st.text(max_size=10), toml_values), max_size=4
    ),
    st.dictionaries(st.sampled_from(setting_names), toml_values, max_size=4),
    st.booleans(),
)
def test_settings_loader_raises_only_config_error(
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str],
    file_values: dict[str, str],
    sectioned: bool,
) -> None:
    tried("settings: environment and config file")
    path = Path(tmp_path_factory.getbasetemp()) / "sidecar.toml"
    lines = ["[sidecar]"] if sectioned else []
    lines += [f"{k} = {v}" for k, v in file_values.items()]
    path.write_text("\n".join(lines))
    environ = {f"BASELINED_{k.upper()}": v for k, v in env.items()}
    try:
        s = Settings.resolve({}, env=environ, config_file=path)
    except ConfigError as err:
        tried("  settings: ConfigError")
        assert str(err)
    else:
        tried("  settings: loaded")
        assert s.bucket_seconds > 0 and s.max_series > 0
