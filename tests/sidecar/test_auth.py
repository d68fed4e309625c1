"""Identity and roles over real gRPC: every RPC checks its role, denials say why,
tokens are hashed, expire and rotate without a restart, and open mode is only
allowed on loopback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from middleware import Client, ClientError
from sidecar.auth import (
    REQUIRED_ROLE,
    PrincipalTable,
    hash_token,
    interceptor_from_settings,
    is_local_address,
    parse_principals,
)
from sidecar.errors import ConfigError
from sidecar.server import SERVICE_NAMES, Sidecar
from tests.sidecar.test_server import Running, settings_for

TOKENS = {"ingest": "tok-ingest-1", "read": "tok-read-1", "admin": "tok-admin-1"}
DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def write_principals(path: Path) -> None:
    lines = [
        {"name": f"{role}-bot", "roles": [role], "token_sha256": hash_token(tok)}
        for role, tok in TOKENS.items()
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


@pytest.fixture
def principals(tmp_path: Path) -> Path:
    path = tmp_path / "principals.jsonl"
    write_principals(path)
    return path


@pytest.fixture
def served(principals: Path) -> Iterator[Running]:
    settings = settings_for(auth_tokens_file=str(principals), auth_reload_interval=0)
    running = Running(settings)
    yield running
    running.stop()


def _methods() -> list[tuple[str, Any, bool, bool]]:
    rows = []
    for service in pb.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            request = getattr(pb, m.input_type.name)
            rows.append(
                (f"/{service.full_name}/{m.name}", request, m.client_streaming, m.server_streaming)
            )
    return rows


METHODS = _methods()


def call(
    channel: grpc.Channel,
    method: str,
    request: Any,
    streaming_in: bool,
    streaming_out: bool,
    token: str | None,
) -> grpc.StatusCode:
    """The status of one call with an empty request (OK when it succeeded)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    ser = request.SerializeToString
    try:
        if streaming_in:
            stub: Any = channel.stream_unary(method, ser, None)
            stub(iter([request()]), timeout=5, metadata=metadata)
        elif streaming_out:
            stream: Any = channel.unary_stream(method, ser, None)(
                request(), timeout=0.5, metadata=metadata
            )
            for _ in stream:
                break
        else:
            channel.unary_unary(method, ser, None)(request(), timeout=5, metadata=metadata)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code
    return grpc.StatusCode.OK


def test_every_rpc_of_the_proto_has_a_role() -> None:
    assert sorted(m for m, *_ in METHODS) == sorted(REQUIRED_ROLE)
    assert set(REQUIRED_ROLE.values()) == {"ingest", "read", "admin"}


@pytest.mark.parametrize("role", sorted(TOKENS))
def test_each_role_can_do_exactly_its_rpcs(served: Running, role: str) -> None:
    served_services = set(SERVICE_NAMES)
    checked = 0
    for method, request, cin, cout in METHODS:
        if method.split("/")[1] not in served_services:
            continue  # e.g. Governance before its servicer is registered
        code = call(served.channel, method, request, cin, cout, TOKENS[role])
        if REQUIRED_ROLE[method] == role:
            assert code not in DENIED, f"{role} was refused {method}: {code}"
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{role} got {code} on {method}"
        checked += 1
    assert checked >= 16


def test_no_token_is_unauthenticated_and_says_how_to_authenticate(served: Running) -> None:
    with pytest.raises(grpc.RpcError) as info:
        served.baselines.ListBaselines(pb.ListBaselinesRequest(), timeout=5)
    err: Any = info.value
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in err.details()


def test_health_is_open(served: Running) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1


def test_an_ingest_token_cannot_freeze_and_the_message_names_the_rule(served: Running) -> None:
    target = f"127.0.0.1:{served.sidecar.port}"
    with Client(target, token=TOKENS["ingest"]) as client, pytest.raises(ClientError) as info:
        client.freeze("m", "production", name="b1")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "'admin' role" in info.value.details and "ingest-bot" in info.value.details
    with Client(target, token=TOKENS["read"]) as reader:  # nothing was frozen
        assert list(reader.list().baselines) == []


def test_unknown_and_malformed_tokens_are_unauthenticated(served: Running) -> None:
    assert call(served.channel, "/baselined.v1.Baselines/ListBaselines", pb.ListBaselinesRequest,
                False, False, "not-a-token") == grpc.StatusCode.UNAUTHENTICATED  # fmt: skip
    with pytest.raises(grpc.RpcError) as info:
        served.baselines.ListBaselines(
            pb.ListBaselinesRequest(), timeout=5, metadata=(("authorization", "Basic abc"),)
        )
    err: Any = info.value
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "malformed" in err.details()


def test_expired_token_is_unauthenticated(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        "[[principal]]\n"
        'name = "old-ci"\nroles = ["read"]\n'
        f'token_sha256 = "{hash_token("old")}"\nexpires_at = "2020-01-01T00:00:00Z"\n'
    )
    running = Running(settings_for(auth_tokens_file=str(path)))
    try:
        target = f"127.0.0.1:{running.sidecar.port}"
        with Client(target, token="old") as client, pytest.raises(ClientError) as info:
            client.list()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in info.value.details and "old-ci" in info.value.details
    finally:
        running.stop()


def test_tokens_rotate_without_restart(served: Running, principals: Path) -> None:
    target = f"127.0.0.1:{served.sidecar.port}"
    with Client(target, token="tok-read-2") as new, Client(target, token=TOKENS["read"]) as old:
        with pytest.raises(ClientError) as info:
            new.list()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert old.list() is not None
        # Rotate: the new token replaces the old one in the file.
        lines = [
            json.loads(line)
            for line in principals.read_text().splitlines()
            if "read-bot" not in line
        ]
        lines.append(
            {"name": "read-bot", "roles": ["read"], "token_sha256": hash_token("tok-read-2")}
        )
        principals.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        os.utime(principals, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        assert new.list() is not None
        with pytest.raises(ClientError) as info:
            old.list()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_broken_edit_keeps_the_previous_principals(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_principals(path)
    clock = Clock()
    table = PrincipalTable(path=str(path), reload_interval=2.0, clock=clock)
    assert table.by_token(TOKENS["admin"]).roles == {"admin"}
    path.write_text('{"name": "x", "roles": ["root"]}\n')
    clock.now += 3
    assert not table.maybe_reload()
    assert table.by_token(TOKENS["admin"]).name == "admin-bot"


def test_reload_is_polled_not_read_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_principals(path)
    clock = Clock()
    table = PrincipalTable(path=str(path), reload_interval=2.0, clock=clock)
    table.maybe_reload()
    path.write_text("")
    clock.now += 1
    assert table.by_token(TOKENS["read"]).name == "read-bot"  # not re-read yet
    clock.now += 2
    with pytest.raises(Exception, match="not known"):
        table.by_token(TOKENS["read"])


def test_principals_file_errors_name_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"line 2 .*unknown role\(s\) root"):
        parse_principals(
            '{"name": "a", "roles": ["read"], "cert_subject": "CN=a"}\n'
            '{"name": "b", "roles": ["root"], "cert_subject": "CN=b"}\n',
            source="f",
        )
    with pytest.raises(ConfigError, match="64 hex digits"):
        parse_principals('[{"name": "a", "roles": ["read"], "token_sha256": "s3cret"}]', source="f")
    with pytest.raises(ConfigError, match="exactly one of"):
        parse_principals('[[principal]]\nname = "a"\nroles = ["read"]\n', source="f")
    entries = parse_principals(
        '[[principal]]\nname = "a"\nroles = ["read", "admin"]\ncert_subject = "CN=ops"\n'
        "expires_at = 2030-01-01T00:00:00Z\n",
        source="f",
    )
    assert entries[0].roles == {"read", "admin"} and entries[0].expires_at == 1893456000.0


def test_inline_principals_from_the_environment_setting() -> None:
    inline = json.dumps([{"name": "env-bot", "roles": ["read"], "token_sha256": hash_token("e")}])
    running = Running(settings_for(auth_tokens=inline))
    try:
        with Client(f"127.0.0.1:{running.sidecar.port}", token="e") as client:
            assert client.list() is not None
    finally:
        running.stop()


def test_open_mode_is_refused_off_loopback_unless_forced() -> None:
    with pytest.raises(ConfigError, match="--insecure-open"):
        Sidecar(settings_for(listen="0.0.0.0:0"))
    assert interceptor_from_settings(settings_for(listen="0.0.0.0:0", allow_open=True)) is None
    assert interceptor_from_settings(settings_for(listen="unix:/tmp/x.sock")) is None


def test_open_mode_covers_the_http_listener_too() -> None:
    """/v1/events and /v1/kserve change state: an open HTTP listener on the network is
    refused like an open gRPC one, naming the address."""
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0:9464 without authentication"):
        Sidecar(settings_for(listen="unix:/tmp/x.sock", http_listen="0.0.0.0:9464"))
    assert (
        interceptor_from_settings(settings_for(listen="127.0.0.1:0", http_listen="127.0.0.1:0"))
        is None
    )
    forced = settings_for(listen="127.0.0.1:0", http_listen="0.0.0.0:0", allow_open=True)
    assert interceptor_from_settings(forced) is None


def test_open_mode_on_loopback_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="sidecar.auth"):
        assert interceptor_from_settings(settings_for(listen="127.0.0.1:0")) is None
    assert "open mode" in caplog.text


def test_is_local_address() -> None:
    assert is_local_address("localhost:1") and is_local_address("[::1]:5")
    assert not is_local_address("10.1.2.3:50051") and not is_local_address("example.com:1")


def test_token_to_a_remote_plaintext_target_is_refused_client_side() -> None:
    with pytest.raises(ValueError, match="only sent over TLS"):
        Client("10.9.9.9:50051", token="x")
