"""Shared fixtures: the real Redis server and unique key prefixes.

Redis tests talk to a real server (``BASELINED_TEST_REDIS_URL``, default
``redis://127.0.0.1:6379/0``). When none answers they are skipped, unless
``BASELINED_REQUIRE_REDIS=1`` (set by ``.ci/run``), which turns the skip into
a failure so CI can never pass without having exercised Redis.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = os.environ.get("BASELINED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("BASELINED_REQUIRE_REDIS", "") not in ("", "0", "false", "no")


def _redis_answers(url: str) -> str | None:
    """None when the server answers PING, else the reason it does not."""
    try:
        import redis
    except ImportError as err:  # pragma: no cover - the dev extra brings redis
        return f"redis-py is not installed ({err})"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as err:
        return f"no Redis at {url}: {err}"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a live Redis server; skips (or fails under BASELINED_REQUIRE_REDIS) if absent."""
    reason = _redis_answers(REDIS_URL)
    if reason is not None:
        if REQUIRE_REDIS:
            pytest.fail(f"{reason} (BASELINED_REQUIRE_REDIS is set, so this is a failure)")
        pytest.skip(reason)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test; every key under it is deleted afterwards."""
    import redis

    prefix = f"bltest-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            for key in keys:  # keys may live in different slots on a cluster
                client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """URL (``redis+cluster://``) of a real 3-primary Redis Cluster started for this
    session from ``redis-server`` processes (``tests/cluster_support.py``); skips,
    or fails under BASELINED_REQUIRE_REDIS, when redis-server is missing."""
    from tests.cluster_support import ClusterUnavailable, LocalCluster

    cluster = LocalCluster(masters=3)
    try:
        cluster.start()
    except ClusterUnavailable as err:
        if REQUIRE_REDIS:
            pytest.fail(f"{err} (BASELINED_REQUIRE_REDIS is set, so this is a failure)")
        pytest.skip(str(err))
    try:
        yield cluster.url
    finally:
        cluster.stop()
