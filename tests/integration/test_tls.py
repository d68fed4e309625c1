"""TLS and mTLS with certificates generated here: the gRPC and HTTP listeners,
client certificates mapped to principals, a wrong-CA certificate refused,
certificates reloaded on change, and the middleware shipping over TLS with a
token."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from middleware import Client, ClientError, Shadow
from sidecar.auth import hash_token
from tests.integration.conftest import ROOT, child_env, free_port
from tests.sidecar.test_server import Running, settings_for

READ_TOKEN, INGEST_TOKEN = "tls-read-token", "tls-ingest-token"


@dataclass
class Issued:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    """A throwaway certificate authority writing PEM files under ``folder``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = folder / f"{name}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, server: bool = False, stem: str | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = stem or f"{self.name}-{cn}"
        out = Issued(self.folder / f"{stem}.pem", self.folder / f"{stem}.key")
        # Write the key first: a reload that sees the new cert must find its key.
        out.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = CA(folder, "ca"), CA(folder, "other-ca")
    return {
        "ca": ca,
        "server": ca.issue("sidecar", server=True),
        "reader": ca.issue("reader-client"),
        "stranger": ca.issue("stranger-client"),  # right CA, no principal
        "foreign": other.issue("reader-client"),  # same CN, wrong CA
        "folder": folder,
    }


def principals(tmp_path: Path) -> Path:
    path = tmp_path / "principals.toml"
    path.write_text(
        f'[[principal]]\nname = "reader"\nroles = ["read"]\ntoken_sha256 = "{hash_token(READ_TOKEN)}"\n'
        f'[[principal]]\nname = "shipper"\nroles = ["ingest"]\ntoken_sha256 = "{hash_token(INGEST_TOKEN)}"\n'
        '[[principal]]\nname = "reader-svc"\nroles = ["read"]\ncert_subject = "CN=reader-client"\n'
    )
    return path


@pytest.fixture
def tls_sidecar(pki: dict[str, Any], tmp_path: Path) -> Iterator[Running]:
    settings = settings_for(
        auth_tokens_file=str(principals(tmp_path)),
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        http_listen="127.0.0.1:0",
    )
    running = Running(settings)
    yield running
    running.stop()


@pytest.fixture
def mtls_sidecar(pki: dict[str, Any], tmp_path: Path) -> Iterator[Running]:
    settings = settings_for(
        auth_tokens_file=str(principals(tmp_path)),
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        tls_client_ca=str(pki["ca"].pem),
        http_listen="127.0.0.1:0",
    )
    running = Running(settings)
    yield running
    running.stop()


def target(running: Running) -> str:
    return f"localhost:{running.sidecar.port}"


def test_tls_with_a_token(tls_sidecar: Running, pki: dict[str, Any]) -> None:
    with Client(target(tls_sidecar), tls_ca=str(pki["ca"].pem), token=READ_TOKEN) as client:
        assert list(client.list().baselines) == []
    with Client(target(tls_sidecar), tls_ca=str(pki["ca"].pem)) as anonymous:
        with pytest.raises(ClientError) as info:
            anonymous.list()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_client_cannot_talk_to_a_tls_sidecar(tls_sidecar: Running) -> None:
    with Client(target(tls_sidecar), timeout=2) as client, pytest.raises(ClientError) as info:
        client.list()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_server_ca_fails(
    tls_sidecar: Running, pki: dict[str, Any]
) -> None:
    other_ca = str(pki["folder"] / "other-ca.pem")
    with (
        Client(target(tls_sidecar), tls_ca=other_ca, token=READ_TOKEN, timeout=2) as client,
        pytest.raises(ClientError) as info,
    ):
        client.list()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_mtls_certificate_maps_to_a_principal(mtls_sidecar: Running, pki: dict[str, Any]) -> None:
    reader = pki["reader"]
    with Client(
        target(mtls_sidecar),
        tls_ca=str(pki["ca"].pem),
        tls_cert=str(reader.cert),
        tls_key=str(reader.key),
    ) as client:
        assert list(client.list().baselines) == []
        with pytest.raises(ClientError) as info:
            client.freeze("m", "production", name="b")
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "reader-svc" in info.value.details


def test_mtls_certificate_without_a_principal_is_unauthenticated(
    mtls_sidecar: Running, pki: dict[str, Any]
) -> None:
    stranger = pki["stranger"]
    with Client(
        target(mtls_sidecar), tls_ca=str(pki["ca"].pem), tls_cert=str(stranger.cert), tls_key=str(stranger.key)
    ) as client, pytest.raises(ClientError) as info:  # fmt: skip
        client.list()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "CN=stranger-client" in info.value.details


def test_mtls_refuses_a_certificate_from_another_ca(
    mtls_sidecar: Running, pki: dict[str, Any]
) -> None:
    foreign = pki["foreign"]
    with Client(
        target(mtls_sidecar), tls_ca=str(pki["ca"].pem), tls_cert=str(foreign.cert),
        tls_key=str(foreign.key), token=READ_TOKEN, timeout=2,
    ) as client, pytest.raises(ClientError) as info:  # fmt: skip
        client.list()
    # The handshake fails: not even a valid token gets through.
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_client_without_a_certificate(
    mtls_sidecar: Running, pki: dict[str, Any]
) -> None:
    with (
        Client(target(mtls_sidecar), tls_ca=str(pki["ca"].pem), token=READ_TOKEN, timeout=2) as c,
        pytest.raises(ClientError) as info,
    ):
        c.list()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def _served_cert(port: int, ca: Path, *, client: Any = None, alpn: str = "h2") -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols([alpn])
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_certificates_reload_when_the_files_change(pki: dict[str, Any], tmp_path: Path) -> None:
    ca: CA = pki["ca"]
    first = ca.issue("sidecar", server=True, stem="rotating")
    settings = settings_for(
        auth_tokens_file=str(principals(tmp_path)),
        tls_cert=str(first.cert),
        tls_key=str(first.key),
        http_listen="127.0.0.1:0",
    )
    running = Running(settings)
    try:
        assert running.sidecar.http is not None
        http_port = running.sidecar.http.port
        before = _served_cert(running.sidecar.port, ca.pem)
        before_http = _served_cert(http_port, ca.pem, alpn="http/1.1")
        time.sleep(0.01)  # a distinct mtime even on coarse clocks
        ca.issue("sidecar", server=True, stem="rotating")  # rewrites both files
        after = _served_cert(running.sidecar.port, ca.pem)
        after_http = _served_cert(http_port, ca.pem, alpn="http/1.1")
        assert before.serial_number == before_http.serial_number
        assert after.serial_number != before.serial_number
        assert after_http.serial_number == after.serial_number
        with Client(target(running), tls_ca=str(ca.pem), token=READ_TOKEN) as client:
            assert list(client.list().baselines) == []
    finally:
        running.stop()


def _https_get(url: str, ca: Path, client: Any = None) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    with urllib.request.urlopen(url, context=ctx, timeout=5) as response:
        status: int = response.status
        return status


def test_http_listener_serves_tls_and_mtls(
    tls_sidecar: Running, mtls_sidecar: Running, pki: dict[str, Any]
) -> None:
    assert tls_sidecar.sidecar.http is not None and mtls_sidecar.sidecar.http is not None
    tls_port, mtls_port = tls_sidecar.sidecar.http.port, mtls_sidecar.sidecar.http.port
    assert _https_get(f"https://localhost:{tls_port}/healthz", pki["ca"].pem) == 200
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plaintext to a TLS port
        urllib.request.urlopen(f"http://127.0.0.1:{tls_port}/healthz", timeout=5)
    assert _https_get(f"https://localhost:{mtls_port}/healthz", pki["ca"].pem, pki["reader"]) == 200
    for client in (None, pki["foreign"]):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _https_get(f"https://localhost:{mtls_port}/healthz", pki["ca"].pem, client)


def _https(
    url: str, ca: Path, client: Any = None, *, method: str = "GET", token: str = ""
) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, headers=headers)
    req.method = method
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def test_http_roles_from_the_client_certificate(mtls_sidecar: Running, pki: dict[str, Any]) -> None:
    assert mtls_sidecar.sidecar.http is not None
    base = f"https://localhost:{mtls_sidecar.sidecar.http.port}"
    ca = pki["ca"].pem
    # CN=reader-client maps to reader-svc (read): /metrics passes the role check
    # (404: metrics are not enabled on this sidecar), /v1/events needs admin.
    status, _ = _https(f"{base}/metrics", ca, pki["reader"])
    assert status == 404
    status, body = _https(f"{base}/v1/events", ca, pki["reader"], method="POST")
    assert status == 403
    assert json.loads(body)["error"] == "role_admin_required"
    assert "reader-svc" in json.loads(body)["message"]
    # Right CA, but the subject maps to no principal.
    status, body = _https(f"{base}/metrics", ca, pki["stranger"])
    assert status == 401 and json.loads(body)["error"] == "unknown_certificate"
    # A token wins over the certificate.
    status, body = _https(f"{base}/v1/kserve", ca, pki["reader"], method="POST", token=INGEST_TOKEN)
    assert status == 400  # past the ingest check; an empty body is not a KServe event


def test_middleware_ships_over_tls_with_a_token(tls_sidecar: Running, pki: dict[str, Any]) -> None:
    shadow = Shadow(
        model="ranker",
        target=target(tls_sidecar),
        tls_ca=str(pki["ca"].pem),
        token=INGEST_TOKEN,
        features=lambda args, kwargs: {"x": float(args[0])},
        flush_interval=0.05,
        atexit=False,
        environ={},
    )
    score = shadow.wrap(lambda x: x * 2)
    for i in range(50):
        assert score(i) == 2 * i
    shadow.close(timeout=5.0)
    stats = shadow.stats()
    assert stats.records_accepted == 50, stats
    with Client(target(tls_sidecar), tls_ca=str(pki["ca"].pem), token=READ_TOKEN) as client:
        view = client.window("ranker", "production")
    counts = {s.signal: s.count for s in view.series}
    assert counts.get("x") == 50, counts


def test_middleware_without_the_token_is_refused(tls_sidecar: Running, pki: dict[str, Any]) -> None:
    shadow = Shadow(
        model="ranker",
        target=target(tls_sidecar),
        tls_ca=str(pki["ca"].pem),
        features=lambda args, kwargs: {"x": 1.0},
        flush_interval=0.05,
        atexit=False,
        environ={},
    )
    score = shadow.wrap(lambda x: x)
    for i in range(10):
        assert score(i) == i  # inference is never affected
    shadow.close(timeout=5.0)
    assert shadow.stats().records_accepted == 0


def test_serve_refuses_open_mode_off_loopback(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "serve", "--listen", f"0.0.0.0:{port}",
         "--store", ":memory:"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "without authentication" in result.stderr and "--insecure-open" in result.stderr


def test_insecure_open_forces_open_mode(tmp_path: Path) -> None:
    running = Running(settings_for(listen="0.0.0.0:0", allow_open=True))
    try:
        with Client(f"127.0.0.1:{running.sidecar.port}") as client:
            assert list(client.list().baselines) == []
    finally:
        running.stop()


def test_cli_flags_carry_credentials(
    tls_sidecar: Running, pki: dict[str, Any], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(READ_TOKEN + "\n")
    base = [sys.executable, "-m", "sidecar.cli", "baselines", "list", "--json",
            "--target", target(tls_sidecar), "--tls-ca", str(pki["ca"].pem)]  # fmt: skip
    env = {k: v for k, v in child_env().items() if not k.startswith("BASELINED_")}
    ok = subprocess.run([*base, "--token-file", str(token_file)], env=env, capture_output=True,
                        text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"baselines": []}
    refused = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    env_token = subprocess.run(base, env={**env, "BASELINED_TOKEN": READ_TOKEN},
                               capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert env_token.returncode == 0, env_token.stderr
    assert os.path.exists(token_file)
