"""RedisStore with an ACL user and password (``redis://user:pass@host``), the
user's key pattern enforced, and ``rediss://`` TLS against a private TLS
redis-server started here with certificates generated in the test."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sidecar.errors import StoreUnavailable
from sidecar.records import Status
from sidecar.server import redact_url
from sidecar.stores import open_store
from sidecar.stores.redis import RedisStore
from tests.integration.conftest import free_port
from tests.integration.test_tls import CA
from tests.stores.test_redis import _exercise

PASSWORD = "pw-" + uuid.uuid4().hex


def _acl_user(client: redis.Redis, prefix: str) -> str:
    user = f"bltest-{uuid.uuid4().hex[:10]}"
    # Keys only under this test's prefix; scripts and the commands the store uses.
    client.execute_command(
        "ACL", "SETUSER", user, "on", f">{PASSWORD}", f"~{prefix}:*", "&*", "+@all"
    )  # type: ignore[no-untyped-call]
    return user


@pytest.fixture
def acl_user(redis_url: str, redis_prefix: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    user = _acl_user(client, redis_prefix)
    yield user
    client.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]
    client.close()


def _with_user(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest.rpartition('@')[2]}"


def test_store_works_as_an_acl_user(redis_url: str, redis_prefix: str, acl_user: str) -> None:
    url = _with_user(redis_url, acl_user, PASSWORD)
    store = RedisStore(url, prefix=redis_prefix)
    try:
        store.ping()
        _exercise(store, "fraud")
        assert store.get_pointer("fraud", "prod").active == "fraud-b1"
        assert store.get_baseline("fraud-b1").status == Status.ACTIVE
    finally:
        store.close()
    who = redis.Redis.from_url(url)
    try:
        whoami = who.execute_command("ACL", "WHOAMI")  # type: ignore[no-untyped-call]
        assert whoami in (acl_user.encode(), acl_user)
    finally:
        who.close()


def test_the_acl_key_pattern_is_enforced(redis_url: str, redis_prefix: str, acl_user: str) -> None:
    url = _with_user(redis_url, acl_user, PASSWORD)
    outside = RedisStore(url, prefix=f"{redis_prefix}x")  # keys the user may not touch
    try:
        with pytest.raises(StoreUnavailable, match=r"(?i)noperm|no permissions"):
            _exercise(outside, "fraud")
    finally:
        outside.close()


def test_a_wrong_password_is_refused_without_leaking_it(
    redis_url: str, redis_prefix: str, acl_user: str
) -> None:
    url = _with_user(redis_url, acl_user, "wrong-password")
    store = RedisStore(url, prefix=redis_prefix)
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.ping()
        assert "wrong-password" not in str(info.value)
    finally:
        store.close()
    assert "wrong-password" not in redact_url(url)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, CA]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed here, so rediss:// cannot be tested")
    ca = CA(tmp_path, "redis-ca")
    server = ca.issue("redis", server=True)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(server.cert),
         "--tls-key-file", str(server.key), "--tls-ca-cert-file", str(ca.pem),
         "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
         "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca.pem}"
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                if "TLS" in output and "not" in output.lower() and "support" in output.lower():
                    pytest.skip(f"this redis-server build has no TLS: {output[-300:]}")
                pytest.fail(f"TLS redis-server exited: {output[-2000:]}")
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=1)
                client.ping()
                client.close()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_rediss_with_an_acl_user(tls_redis: tuple[int, CA]) -> None:
    port, ca = tls_redis
    admin = redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca.pem}")
    prefix = f"bltest-{uuid.uuid4().hex[:10]}"
    user = _acl_user(admin, prefix)
    url = f"rediss://{user}:{PASSWORD}@localhost:{port}/0?ssl_ca_certs={ca.pem}"
    store = open_store(url, prefix=prefix)
    assert isinstance(store, RedisStore)
    try:
        _exercise(store, "fraud")
        assert store.get_pointer("fraud", "prod").active == "fraud-b1"
    finally:
        store.close()
        admin.close()
    # Plain redis:// to the TLS port does not get through.
    plain = RedisStore(
        f"redis://{user}:{PASSWORD}@127.0.0.1:{port}/0",
        prefix=prefix,
        connect_timeout=1,
        socket_timeout=1,
    )
    try:
        with pytest.raises(StoreUnavailable):
            plain.ping()
    finally:
        plain.close()


def test_rediss_refuses_a_server_signed_by_an_untrusted_ca(
    tls_redis: tuple[int, CA], tmp_path: Path
) -> None:
    port, _ = tls_redis
    other = CA(tmp_path, "untrusted")
    store = RedisStore(
        f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={other.pem}", prefix="x", connect_timeout=2
    )
    try:
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate|ssl"):
            store.ping()
    finally:
        store.close()
