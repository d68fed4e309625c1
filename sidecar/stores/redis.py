"""``RedisStore``: the production store on Redis (standalone today, Cluster later).

Every key of one model carries the hash tag ``{model}`` (percent-escaped, so a
model name holding ``{``, ``}`` or ``:`` is safe), and no command or Lua script
touches keys of two models: the same code runs on Redis Cluster. A small global
index (model list, baseline id -> model, models with window data) lives in its
own keys, written by single-key commands. Baseline creation and the pointer's
compare-and-set are Lua scripts whose keys all sit in the model's slot. See
``docs/storage.md`` for the key layout and the guarantees.

Needs Redis >= 7.0 (scripts use the ``#!lua`` shebang, so the server refuses
them before any write when it is out of memory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from sidecar.errors import (
    AlreadyExists,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from sidecar.records import (
    AuditDraft,
    AuditEntry,
    BaselineRecord,
    EventRecord,
    ImpactRecord,
    Partial,
    PendingApproval,
    PointerState,
    Policy,
    Status,
)
from sidecar.stores.base import DEFAULT_EVENT_RETENTION, check_prediction_args, check_ttl

__all__ = ["RedisStore"]

_T = TypeVar("_T")

MAX_EVENTS_PER_MODEL = 100_000
"""Cap of each model's event stream (approximate ``MAXLEN``), on top of retention."""

_CHUNK = 500  # field/value pairs per HSET inside scripts (Lua's unpack has a stack limit)
_SEAL_ATTEMPTS = 32  # audit appends retried when another writer moved the chain's head

# Audit hash chain, per model: Lua has no sha256, so Python seals the new entry
# with the head it expects (seq and hash of the newest entry) and each script
# appends it only when the head is still that one (compare-and-set on the
# head); otherwise it returns {'stale', seq, hash} and Python seals again.
# Used by the scripts below with KEYS seq (string), head (string), stream.
_CHECK_HEAD = """
local head_seq = tonumber(redis.call('GET', @SEQ@) or '0')
local head_hash = redis.call('GET', @HEAD@) or ''
if head_seq ~= tonumber(@PREV_SEQ@) or head_hash ~= @PREV_HASH@ then
  return {'stale', head_seq, head_hash}
end
"""
_APPEND = """
redis.call('SET', @SEQ@, head_seq + 1)
redis.call('SET', @HEAD@, @NEW_HASH@)
redis.call('XADD', @STREAM@, '*', 'seq', head_seq + 1, 'entry', @ENTRY@)
"""


def _chain(script: str, **names: str) -> str:
    for name, value in names.items():
        script = script.replace(f"@{name}@", value)
    return script


# KEYS[1] window index (zset: member "bucket:writer", score bucket)
# KEYS[2] window expiry (zset: same members, score expiry time)
# KEYS[3..] one partial hash per partial, already written by HSET + EXPIRE
# ARGV[1] ttl seconds, then per partial: member, bucket
_INDEX_WINDOW = """#!lua
local ttl = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 3, #KEYS do
  -- EXPIRE also refreshes the TTL of a partial written with no series
  if redis.call('EXPIRE', KEYS[i], ttl) == 1 then
    local a = 2 * (i - 3) + 2
    redis.call('ZADD', KEYS[1], ARGV[a + 1], ARGV[a])
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[a])
  end
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone, CHUNK do
  redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + CHUNK - 1, #gone)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('PTTL', KEYS[i]) < ttl * 1000 then
    redis.call('PEXPIRE', KEYS[i], ttl * 1000)
  end
end
return 1
""".replace("CHUNK", str(_CHUNK))

# KEYS[1] global zset of (model, environment) with window data, score: expiry
_TOUCH_WINDOWS = """#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[1]), ARGV[2])
return 1
"""

_LIST_WINDOWS = """#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: meta, series, status, names, baselines, audit stream, audit seq, audit head
# ARGV: id, name, record json, created_at, status, sealed audit json, expected head
#       seq, expected head hash, new hash, series field/value pairs
_CREATE_BASELINE = (
    """#!lua
if redis.call('EXISTS', KEYS[1]) == 1 then return {'id'} end
local other = redis.call('HGET', KEYS[4], ARGV[2])
if other then return {'name', other} end
"""
    + _CHECK_HEAD
    + """
for i = 10, #ARGV, 2 * CHUNK do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 2 * CHUNK - 1, #ARGV)))
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
"""
    + _APPEND
    + """
return {'ok', head_seq + 1}
"""
).replace("CHUNK", str(_CHUNK))
_CREATE_BASELINE = _chain(
    _CREATE_BASELINE,
    SEQ="KEYS[7]",
    HEAD="KEYS[8]",
    STREAM="KEYS[6]",
    PREV_SEQ="ARGV[7]",
    PREV_HASH="ARGV[8]",
    NEW_HASH="ARGV[9]",
    ENTRY="ARGV[6]",
)

# KEYS: pointer, status, audit stream, audit seq, audit head
# ARGV: expected revision, has active ('1'/'0'), active id, pointer active json,
#       history json, sealed audit json, expected head seq, expected head hash,
#       new hash, then id/status pairs
_CAS_POINTER = _chain(
    """#!lua
local current = tonumber(redis.call('HGET', KEYS[1], 'revision') or '0')
if current ~= tonumber(ARGV[1]) then return {'conflict', current} end
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then
  return {'notfound', ARGV[3]}
end
for i = 10, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then return {'notfound', ARGV[i]} end
end
"""
    + _CHECK_HEAD
    + """
local revision = current + 1
redis.call('HSET', KEYS[1], 'active', ARGV[4], 'history', ARGV[5], 'revision', revision)
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
"""
    + _APPEND
    + """
return {'ok', head_seq + 1, revision}
""",
    SEQ="KEYS[4]",
    HEAD="KEYS[5]",
    STREAM="KEYS[3]",
    PREV_SEQ="ARGV[7]",
    PREV_HASH="ARGV[8]",
    NEW_HASH="ARGV[9]",
    ENTRY="ARGV[6]",
)

# KEYS: audit stream, audit seq, audit head[, hash to write]
# ARGV: sealed audit json, expected head seq, expected head hash, new hash[,
#       field, value (HSET into KEYS[4]; value '' deletes the field)]
_AUDITED_WRITE = _chain(
    "#!lua\n"
    + _CHECK_HEAD
    + """
if #KEYS == 4 then
  if ARGV[6] == '' then redis.call('HDEL', KEYS[4], ARGV[5])
  else redis.call('HSET', KEYS[4], ARGV[5], ARGV[6]) end
end
"""
    + _APPEND
    + """
return {'ok', head_seq + 1}
""",
    SEQ="KEYS[2]",
    HEAD="KEYS[3]",
    STREAM="KEYS[1]",
    PREV_SEQ="ARGV[2]",
    PREV_HASH="ARGV[3]",
    NEW_HASH="ARGV[4]",
    ENTRY="ARGV[1]",
)


# Fleet-mode leases (one string per (model, environment), value "token holder").
# KEYS[1] lease, KEYS[2] token counter; ARGV holder, ttl ms.
_ACQUIRE_LEASE = """#!lua
local cur = redis.call('GET', KEYS[1])
if cur then
  local sp = string.find(cur, ' ', 1, true)
  if string.sub(cur, sp + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, 1, sp - 1))
  end
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'NX', 'PX', ARGV[2])
return token
"""

# KEYS[1] lease; ARGV "token holder", ttl ms (0: release)
_RENEW_LEASE = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS[1] lease, KEYS[2] alert state hash; ARGV "token holder", environment, state
_FENCED_ALERTS = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


# Outcomes (issue 8): predictions kept per time bucket, one hash per bucket.
# KEYS[1] bucket index (zset: member and score the bucket start), KEYS[2] this
# bucket's hash; ARGV now-cutoff (index entries at or below it are gone),
# bucket, max records, expire seconds, key stem of bucket hashes, then
# (request id, record) pairs. Returns the records evicted or refused.
_PUT_PREDICTIONS = """#!lua
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local bucket, max, stem = ARGV[2], tonumber(ARGV[3]), ARGV[5]
local total = 0
for _, b in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  total = total + redis.call('HLEN', stem .. b)
end
redis.call('ZADD', KEYS[1], tonumber(bucket), bucket)
local evicted = 0
for i = 6, #ARGV, 2 do
  if total >= max then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
    if oldest and oldest ~= bucket then
      local n = redis.call('HLEN', stem .. oldest)
      redis.call('DEL', stem .. oldest)
      redis.call('ZREM', KEYS[1], oldest)
      total = total - n
      evicted = evicted + n
    end
  end
  if total < max then
    total = total + redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
  else
    evicted = evicted + 1
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return evicted
"""

_PREDICTION_BUCKETS = 168  # buckets per horizon: an hour each for the default 7 days


def _q(text: str) -> str:
    """Escape one key component: keeps keys unambiguous and hash tags brace-free."""
    return quote(text, safe="")


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _safe_url(url: str) -> str:
    """The URL without password or query string (which may hold one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = (f"{parts.username}@" if parts.username else "") + host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return "<unparseable Redis URL>"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _describe_client(client: redis.Redis) -> str:
    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        return f"redis+cluster://{node.host}:{node.port}" if node else "redis+cluster://?"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _check_scope(model: str, environment: str) -> None:
    # An empty model would give the empty hash tag "{}", which Redis ignores.
    if not model:
        raise InvalidInput("model name must not be empty")
    if not environment:
        raise InvalidInput("environment name must not be empty")


def _lease_ms(holder: str, ttl_seconds: float) -> int:
    if not holder:
        raise InvalidInput("lease holder must not be empty")
    if not ttl_seconds > 0 or not math.isfinite(ttl_seconds):
        raise InvalidInput(f"lease ttl_seconds must be positive, got {ttl_seconds}")
    return max(1, int(ttl_seconds * 1000))


def _ack_options(url: str, acks: Any, timeout: Any) -> tuple[str, int, float]:
    """Take ``replica_acks`` / ``replica_ack_timeout`` out of the URL's query (they
    override the arguments) and check them; the rest of the URL goes to redis-py."""
    base, sep, query = url.partition("?")
    kept: list[str] = []
    for pair in query.split("&") if sep else []:
        name, _, value = pair.partition("=")
        if name == "replica_acks":
            acks = value
        elif name == "replica_ack_timeout":
            timeout = value
        elif pair:
            kept.append(pair)
    try:
        acks = int(acks)
        timeout = float(timeout)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"Redis store option replica_acks must be an integer and replica_ack_timeout"
            f" a number of seconds: {err}"
        ) from err
    if acks < 0:
        raise ConfigError(f"Redis store option replica_acks must be >= 0, got {acks}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ConfigError(f"Redis store option replica_ack_timeout must be > 0, got {timeout}")
    return base + ("?" + "&".join(kept) if kept else ""), acks, timeout


class RedisStore:
    """The :class:`~sidecar.stores.base.Store` on Redis.

    ``url`` is ``redis://``, ``rediss://`` or ``unix://``; ``prefix`` starts
    every key (several deployments can share one server); ``client`` replaces
    the connection made from ``url`` (it must use ``decode_responses=False``;
    the store does not close a client it was given). ``replica_acks`` > 0 (or
    ``?replica_acks=N`` in the URL) makes baseline, pointer and audit writes
    wait (``WAIT``) until that many replicas have them, at most
    ``replica_ack_timeout`` seconds (``?replica_ack_timeout=S``), and fail with
    ``StoreUnavailable`` when fewer confirmed (docs/storage.md, Redis Cluster).

    >>> store = RedisStore("redis://127.0.0.1:6379/0", prefix="bl")  # doctest: +SKIP
    >>> store.get_pointer("fraud", "prod").revision  # doctest: +SKIP
    0
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "bl",
        client: redis.Redis | None = None,
        socket_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        max_events_per_model: int = MAX_EVENTS_PER_MODEL,
        replica_acks: int = 0,
        replica_ack_timeout: float = 1.0,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigError(f"Redis key prefix {prefix!r} must be non-empty and hold no braces")
        url, replica_acks, replica_ack_timeout = _ack_options(
            url, replica_acks, replica_ack_timeout
        )
        self._acks = replica_acks
        self._ack_timeout_ms = max(1, round(replica_ack_timeout * 1000))
        self._prefix = prefix
        self._clock = clock
        self._max_events = max_events_per_model
        scheme = url.partition("://")[0].lower()
        if client is None and scheme in ("redis+cluster", "rediss+cluster"):
            client = self._cluster_client(url, scheme, socket_timeout, connect_timeout)
            self._owns_client = True
            self._where = _safe_url(url)
        elif client is None:
            try:
                client = redis.Redis.from_url(
                    url,
                    decode_responses=False,
                    socket_timeout=socket_timeout,
                    socket_connect_timeout=connect_timeout,
                    # Few, quick retries: a retried script may have run already,
                    # and a caller waiting on a dead server should hear soon.
                    retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
                )
            except ValueError as err:
                raise ConfigError(f"invalid Redis URL {_safe_url(url)!r}: {err}") from err
            self._owns_client = True
            self._where = _safe_url(url)
        else:
            self._owns_client = False
            self._where = _safe_url(url) if url else _describe_client(client)
        self._client: redis.Redis = client
        self._closed = False
        self._sha: dict[str, str] = {}
        self._scripts = {
            "index_window": _INDEX_WINDOW,
            "touch_windows": _TOUCH_WINDOWS,
            "list_windows": _LIST_WINDOWS,
            "create_baseline": _CREATE_BASELINE,
            "cas_pointer": _CAS_POINTER,
            "audited_write": _AUDITED_WRITE,
            "acquire_lease": _ACQUIRE_LEASE,
            "renew_lease": _RENEW_LEASE,
            "fenced_alerts": _FENCED_ALERTS,
            "put_predictions": _PUT_PREDICTIONS,
        }
        self._heads: dict[str, tuple[int, str]] = {}  # chain -> last head seen (a guess)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self._prefix!r})"

    @staticmethod
    def _cluster_client(
        url: str, scheme: str, socket_timeout: float, connect_timeout: float
    ) -> redis.Redis:
        """A ``redis.cluster.RedisCluster`` from a ``redis+cluster://`` seed URL.

        The client discovers the other nodes, follows MOVED and ASK, and on a
        failover re-reads the slot map and retries. It shares redis.Redis's
        command methods, so the store uses it through the same type."""
        plain = scheme.removesuffix("+cluster") + url[len(scheme) :]
        try:
            cluster = RedisCluster.from_url(
                plain,
                decode_responses=False,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3),
            )
        except ValueError as err:
            raise ConfigError(f"invalid Redis Cluster URL {_safe_url(url)!r}: {err}") from err
        except (RedisError, RedisClusterException) as err:
            raise StoreUnavailable(
                f"cannot reach Redis Cluster at {_safe_url(url)}: {err}"
            ) from err
        return cast(redis.Redis, cluster)

    # -- keys --------------------------------------------------------------------

    def _m(self, model: str) -> str:
        """Key stem of one model: ``{prefix}:{{model}}``, the model's hash tag."""
        return f"{self._prefix}:{{{_q(model)}}}"

    def _models_key(self) -> str:
        return f"{self._prefix}:models"

    def _ids_key(self) -> str:
        return f"{self._prefix}:ids"

    def _windows_key(self) -> str:
        return f"{self._prefix}:windows"

    def _chain_stem(self, chain: str) -> str:
        """Key stem of an audit chain: the model's, or (chain "") one no model name
        can produce (``_q`` never leaves a bare ``%``)."""
        return self._m(chain) if chain else f"{self._prefix}:{{%}}"

    def _chain_keys(self, chain: str) -> list[str]:
        """Stream, seq and head keys of an audit chain (one slot)."""
        stem = self._chain_stem(chain)
        return [f"{stem}:audit", f"{stem}:audit:seq", f"{stem}:audit:head"]

    def _partial_key(self, model: str, environment: str, member: str) -> str:
        return f"{self._m(model)}:w:{_q(environment)}:{member}"

    # -- plumbing ----------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Map redis-py failures to ``StoreUnavailable``."""
        if self._closed:
            raise StoreUnavailable(f"Redis store at {self._where} is closed")
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as err:
            raise StoreUnavailable(f"cannot reach Redis at {self._where}: {err}") from err
        except (RedisError, RedisClusterException) as err:
            raise StoreUnavailable(f"Redis at {self._where} answered with an error: {err}") from err

    def _load(self, name: str) -> str:
        sha = self._sha.get(name)
        if sha is None:
            sha = _s(cast(bytes, self._client.script_load(self._scripts[name])))
            self._sha[name] = sha
        return sha

    def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by SHA, loading it once per store (again after a server restart)."""
        for attempt in (0, 1):
            try:
                return self._client.evalsha(self._load(name), len(keys), *keys, *args)
            except NoScriptError:
                self._sha.clear()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _refresh_cluster_map(self) -> None:
        """Re-read a cluster's slot map, which also picks a live default node.

        redis-py's cluster pipeline routes a raw ``EVALSHA`` by asking its
        default node (``COMMAND GETKEYS``) and, on that path, never replaces a
        default node that died: after a failover of that node's primary every
        pipelined flush failed until the process restarted, on every model. A
        refresh after a connection error, plus a default node that answers,
        fixes that (tests/stores/test_cluster_failover.py)."""
        client: Any = self._client
        if not isinstance(self._client, RedisCluster):
            return
        # While the cluster still elects this may fail: the next error refreshes again.
        with suppress(RedisError, RedisClusterException):
            client.nodes_manager.initialize()
        # Until the failover is done the new map still names the dead primary,
        # maybe as default node: move the default to a primary that answers, so
        # the other primaries' models keep working meanwhile.
        default = client.get_default_node()
        for node in [default, *(n for n in client.get_primaries() if n is not default)]:
            with suppress(RedisError, RedisClusterException, AttributeError):
                node.redis_connection.ping()
                if node is not default:
                    client.set_default_node(node)
                return

    def _confirm(self, keys: Sequence[str]) -> None:
        """With ``replica_acks``: wait until the replicas of each key's node have
        everything that node acknowledged so far, or raise ``StoreUnavailable``.

        ``WAIT`` counts the writes of its own connection, and a pool (or a cluster
        client) hands out any connection, so each check writes a marker key in
        the same slot (``{key}:ack``, or ``stem:ack`` for a stem that carries a
        hash tag) and sends ``WAIT`` right after it on one connection: a
        replica that has the marker has every earlier write of that node."""
        if not self._acks:
            return
        for key in dict.fromkeys(keys):
            marker = f"{key}:ack" if "{" in key else f"{{{key}}}:ack"
            for attempt in (0, 1):
                client: Any = self._client
                if isinstance(self._client, RedisCluster):
                    node = client.get_node_from_key(marker)  # the slot map, no round trip
                    client = client.get_redis_connection(node)
                pipe = client.pipeline(transaction=False)
                pipe.set(marker, b"1", px=60_000)
                pipe.execute_command("WAIT", self._acks, self._ack_timeout_ms)
                try:
                    _, acked = pipe.execute()
                    break
                except (MovedError, AskError, TryAgainError, ClusterDownError):
                    if attempt:
                        raise
                    self._refresh_cluster_map()
            if int(acked) < self._acks:
                raise StoreUnavailable(
                    f"Redis at {self._where} applied the write but only {int(acked)} of"
                    f" {self._acks} replicas confirmed it within"
                    f" {self._ack_timeout_ms / 1000:g} s: it may be lost if the primary"
                    " fails over now; read it back before retrying"
                )

    def _pipelined(self, build: Callable[[Any], None]) -> list[Any]:
        """Run the commands ``build`` queues in one round trip (non-transactional)."""
        reloaded = refreshed = False
        while True:
            pipe = self._client.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except NoScriptError:
                # The server lost its script cache (restart, or a replica
                # promoted by a failover): load again and resend; every write
                # here is an idempotent upsert.
                self._sha.clear()
                if reloaded:
                    raise
                reloaded = True
            except (RedisConnectionError, RedisTimeoutError):
                # On a cluster, a node failed over or moved: refresh the slot
                # map and resend once (idempotent upserts, see above).
                if refreshed or not isinstance(self._client, RedisCluster):
                    raise
                self._refresh_cluster_map()
                refreshed = True

    def _sealed(
        self,
        name: str,
        chain: str,
        keys: Sequence[str],
        head_args: int,
        args: Sequence[Any],
        audit: AuditDraft,
        confirm: Sequence[str] = (),
    ) -> tuple[list[Any], AuditEntry | None]:
        """Run a script that appends ``audit`` to ``chain``: seal the entry with
        the head we expect, insert (sealed json, seq, hash, new hash) at
        ``head_args`` of ``args``, and seal again while the script says the head
        moved. Returns the final reply (not 'stale') and the entry it appended
        (None when the script refused before appending)."""
        seq, head = self._heads.get(chain, (0, ""))
        for _ in range(_SEAL_ATTEMPTS):
            entry = AuditEntry.from_draft(seq + 1, audit, prev_hash=head)
            sealed = [entry.to_json(), seq, head, entry.hash]
            full = [*args[:head_args], *sealed, *args[head_args:]]
            reply = cast(list[Any], self._eval(name, keys, full))
            if _s(reply[0]) != "stale":
                if _s(reply[0]) == "ok":
                    self._heads[chain] = (entry.seq, entry.hash)
                    # the model's slot and the global index written before it
                    self._confirm([self._chain_stem(chain), self._models_key(), *confirm])
                    return reply, entry
                return reply, None
            seq, head = int(reply[1]), _s(reply[2])
        raise Conflict(
            f"the audit chain of {chain or 'entries without a model'!r} kept moving under"
            " concurrent writers; try again"
        )

    def _model_of(self, baseline_id: str) -> str:
        model = self._client.hget(self._ids_key(), baseline_id)
        if model is None:
            raise NotFound(f"no baseline with id {baseline_id!r}")
        return _s(cast(bytes, model))

    # -- windows -----------------------------------------------------------------

    def write_partials(
        self,
        model: str,
        environment: str,
        partials: Sequence[Partial],
        *,
        ttl_seconds: int,
    ) -> None:
        """Upsert partials of one (model, environment), pipelined in one round trip.

        Per partial one ``HSET`` and ``EXPIRE``; then one script indexes the
        written buckets (and trims expired index entries), so a reader never
        finds an index entry before its data.
        """
        _check_scope(model, environment)
        check_ttl(ttl_seconds)
        if not partials:
            return
        m = self._m(model)
        keys = [f"{m}:wi:{_q(environment)}", f"{m}:wx:{_q(environment)}"]
        args: list[Any] = [ttl_seconds]
        for p in partials:
            member = f"{int(p.bucket)}:{_q(p.writer)}"
            keys.append(self._partial_key(model, environment, member))
            args += (member, int(p.bucket))
        window = json.dumps([model, environment])

        def build(pipe: Any) -> None:
            # EVALSHA through execute_command: redis-py's cluster pipeline refuses
            # pipe.evalsha() but routes a raw EVALSHA by its keys.
            pipe.execute_command(
                "EVALSHA", self._load("touch_windows"), 1, self._windows_key(), ttl_seconds, window
            )
            for key, p in zip(keys[2:], partials, strict=True):
                if p.series:
                    pipe.hset(key, mapping=dict(p.series))
                    pipe.expire(key, ttl_seconds)
            pipe.execute_command("EVALSHA", self._load("index_window"), len(keys), *keys, *args)

        with self._errors():
            self._pipelined(build)

    def read_partials(self, model: str, environment: str, start: int, end: int) -> list[Partial]:
        """Every writer's partial of every bucket in ``[start, end)``, by bucket then writer."""
        index = f"{self._m(model)}:wi:{_q(environment)}"
        with self._errors():
            members = [
                _s(m)
                for m in cast(list[bytes], self._client.zrangebyscore(index, start, f"({int(end)}"))
            ]
            if not members:
                return []
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                pipe.hgetall(self._partial_key(model, environment, member))
            values = cast(list[dict[bytes, bytes]], pipe.execute())
        out: list[Partial] = []
        for member, series in zip(members, values, strict=True):
            if not series:  # expired since the index was last trimmed
                continue
            bucket, _, writer = member.partition(":")
            out.append(
                Partial(int(bucket), unquote(writer), {_s(k): bytes(v) for k, v in series.items()})
            )
        out.sort(key=lambda p: (p.bucket, p.writer))
        return out

    def list_windows(self) -> list[tuple[str, str]]:
        """The (model, environment) pairs with unexpired window data, sorted. Hidden
        lanes (an environment holding ``\\x1f``, e.g. the quality partials of
        sidecar.outcomes) are not environments and are left out."""
        with self._errors():
            raw = cast(list[bytes], self._eval("list_windows", [self._windows_key()], []))
        pairs = [tuple(json.loads(item)) for item in raw]
        return sorted((str(m), str(e)) for m, e in pairs if "\x1f" not in str(e))

    # -- window compaction (sidecar.compaction) ------------------------------------

    def compact_partials(
        self,
        model: str,
        environment: str,
        start: int,
        end: int,
        *,
        writer: str,
        merge: Callable[[list[Partial]], dict[str, bytes]],
    ) -> bool:
        """Replace every partial of the buckets in ``[start, end)`` by one partial
        ``(start, writer, merge(partials))`` with the latest expiry of those it
        replaces. Optimistic: the index and the partials are WATCHed while read,
        and the swap is one MULTI/EXEC on the model's slot, so a concurrent
        flush into the range makes it give up (False) and change nothing.
        False too when there is nothing to compact."""
        _check_scope(model, environment)
        m, env = self._m(model), _q(environment)
        index, expiry = f"{m}:wi:{env}", f"{m}:wx:{env}"
        target = f"{int(start)}:{_q(writer)}"
        with self._errors(), self._client.pipeline(transaction=True) as transaction:
            pipe: Any = transaction  # redis-py's pipeline methods are partly untyped
            try:
                pipe.watch(index)
                members = [
                    _s(x)
                    for x in cast(list[bytes], pipe.zrangebyscore(index, start, f"({int(end)}"))
                ]
                if not members or members == [target]:
                    pipe.unwatch()
                    return False
                keys = [self._partial_key(model, environment, x) for x in members]
                pipe.watch(index, *keys)
                reads = self._client.pipeline(transaction=False)
                for key in keys:
                    reads.hgetall(key)
                    reads.pttl(key)
                replies = reads.execute()
                partials: list[Partial] = []
                ttl_ms = 0
                for member, series, pttl in zip(members, replies[0::2], replies[1::2], strict=True):
                    if not series:
                        continue
                    ttl_ms = max(ttl_ms, int(pttl))
                    bucket, _, who = member.partition(":")
                    partials.append(
                        Partial(
                            int(bucket), unquote(who), {_s(k): bytes(v) for k, v in series.items()}
                        )
                    )
                merged = (
                    merge(sorted(partials, key=lambda p: (p.bucket, p.writer))) if partials else {}
                )
                pipe.multi()
                pipe.delete(*keys)
                pipe.zrem(index, *members)
                pipe.zrem(expiry, *members)
                if merged and ttl_ms > 0:
                    key = self._partial_key(model, environment, target)
                    pipe.hset(key, mapping=merged)
                    pipe.pexpire(key, ttl_ms)
                    pipe.zadd(index, {target: int(start)})
                    pipe.zadd(expiry, {target: self._clock() + ttl_ms / 1000})
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    # -- baselines ---------------------------------------------------------------

    def create_baseline(
        self,
        record: BaselineRecord,
        series: Mapping[str, bytes],
        audit: AuditDraft,
    ) -> AuditEntry:
        """Write the baseline, its series and audit entry with one script in the model's slot."""
        _check_scope(record.model, record.environment)
        m = self._m(record.model)
        ids = self._ids_key()
        with self._errors():
            # The global id index goes first: a crash after it leaves a
            # dangling entry, which resolves to NotFound.
            pipe = self._client.pipeline(transaction=False)
            pipe.hsetnx(ids, record.id, record.model)
            pipe.hget(ids, record.id)
            pipe.sadd(self._models_key(), record.model)
            created, owner, _ = pipe.execute()
            owner_model = record.model if owner is None else _s(owner)
            if owner_model != record.model:
                meta = f"{self._m(owner_model)}:b:{_q(record.id)}"
                if self._client.exists(meta):
                    raise AlreadyExists(f"baseline id {record.id!r} already exists")
                self._client.hset(ids, record.id, record.model)  # dangling: take it over
                created = True
            keys = [
                f"{m}:b:{_q(record.id)}",
                f"{m}:bs:{_q(record.id)}",
                f"{m}:status",
                f"{m}:names:{_q(record.environment)}",
                f"{m}:baselines",
                *self._chain_keys(record.model),
            ]
            args: list[Any] = [
                record.id,
                record.name,
                record.to_json(),
                repr(float(record.created_at)),
                record.status.value,
            ]
            for sid, state in series.items():
                args += (sid, state)
            reply, entry = self._sealed(
                "create_baseline", record.model, keys, 5, args, audit, confirm=[ids]
            )
            outcome = _s(reply[0])
            if outcome != "ok":
                if created:  # we wrote the index entry for a baseline that was not written
                    self._client.hdel(ids, record.id)
                if outcome == "id":
                    raise AlreadyExists(f"baseline id {record.id!r} already exists")
                raise AlreadyExists(
                    f"a baseline named {record.name!r} already exists for model "
                    f"{record.model!r} in environment {record.environment!r} "
                    f"(id {_s(reply[1])})"
                )
        assert entry is not None
        return entry

    def _records(self, model: str, baseline_ids: Sequence[str]) -> list[BaselineRecord | None]:
        """Records (with status) of ids of one model; None where missing."""
        if not baseline_ids:
            return []
        m = self._m(model)
        pipe = self._client.pipeline(transaction=False)
        for baseline_id in baseline_ids:
            pipe.get(f"{m}:b:{_q(baseline_id)}")
        pipe.hmget(f"{m}:status", list(baseline_ids))
        *metas, statuses = pipe.execute()
        out: list[BaselineRecord | None] = []
        for meta, status in zip(metas, statuses, strict=True):
            if meta is None:
                out.append(None)
                continue
            record = BaselineRecord.from_json(meta)
            if status is not None:
                record = dataclasses.replace(record, status=Status(_s(status)))
            out.append(record)
        return out

    def get_baseline(self, baseline_id: str) -> BaselineRecord:
        """The record with its current status. Raises ``NotFound``."""
        with self._errors():
            (record,) = self._records(self._model_of(baseline_id), [baseline_id])
        if record is None:
            raise NotFound(f"no baseline with id {baseline_id!r}")
        return record

    def get_baseline_series(self, baseline_id: str) -> dict[str, bytes]:
        """All series of a baseline. Raises ``NotFound``."""
        with self._errors():
            m = self._m(self._model_of(baseline_id))
            pipe = self._client.pipeline(transaction=False)
            pipe.exists(f"{m}:b:{_q(baseline_id)}")
            pipe.hgetall(f"{m}:bs:{_q(baseline_id)}")
            exists, series = pipe.execute()
        if not exists:
            raise NotFound(f"no baseline with id {baseline_id!r}")
        return {_s(k): bytes(v) for k, v in series.items()}

    def find_baseline(self, model: str, environment: str, name: str) -> BaselineRecord:
        """The baseline of (model, environment) with that name. Raises ``NotFound``."""
        with self._errors():
            found = self._client.hget(f"{self._m(model)}:names:{_q(environment)}", name)
            records = [] if found is None else self._records(model, [_s(cast(bytes, found))])
        if not records or records[0] is None:
            raise NotFound(
                f"no baseline named {name!r} for model {model!r} in environment {environment!r}"
            )
        return records[0]

    def _models(self) -> list[str]:
        return sorted(_s(m) for m in cast(set[bytes], self._client.smembers(self._models_key())))

    def list_baselines(
        self,
        model: str | None = None,
        environment: str | None = None,
        status: Status | None = None,
    ) -> list[BaselineRecord]:
        """Matching records, oldest first (by ``created_at``, then id)."""
        out: list[BaselineRecord] = []
        with self._errors():
            for name in [model] if model is not None else self._models():
                ids = [
                    _s(i)
                    for i in cast(
                        list[bytes], self._client.zrange(f"{self._m(name)}:baselines", 0, -1)
                    )
                ]
                for record in self._records(name, ids):
                    if record is None:
                        continue
                    if environment is not None and record.environment != environment:
                        continue
                    if status is not None and record.status != status:
                        continue
                    out.append(record)
        out.sort(key=lambda r: (r.created_at, r.id))
        return out

    # -- active pointer ----------------------------------------------------------

    def get_pointer(self, model: str, environment: str) -> PointerState:
        """The pointer; ``PointerState()`` (revision 0) when never set."""
        with self._errors():
            raw = cast(
                dict[bytes, bytes],
                self._client.hgetall(f"{self._m(model)}:ptr:{_q(environment)}"),
            )
        if not raw:
            return PointerState()
        active = json.loads(raw[b"active"])
        return PointerState(active, tuple(json.loads(raw[b"history"])), int(raw[b"revision"]))

    def cas_pointer(
        self,
        model: str,
        environment: str,
        *,
        expected_revision: int,
        active: str | None,
        history: tuple[str, ...],
        status_changes: Mapping[str, Status],
        audit: AuditDraft,
    ) -> tuple[PointerState, AuditEntry]:
        """Compare the revision and apply pointer, statuses and audit in one script."""
        _check_scope(model, environment)
        m = self._m(model)
        keys = [f"{m}:ptr:{_q(environment)}", f"{m}:status", *self._chain_keys(model)]
        args: list[Any] = [
            int(expected_revision),
            "0" if active is None else "1",
            active or "",
            json.dumps(active),
            json.dumps(list(history)),
        ]
        for baseline_id, new_status in status_changes.items():
            args += (baseline_id, Status(new_status).value)
        with self._errors():
            self._client.sadd(self._models_key(), model)  # global index first
            reply, entry = self._sealed("cas_pointer", model, keys, 5, args, audit)
        outcome = _s(reply[0])
        if outcome == "conflict":
            raise Conflict(
                f"active pointer of model {model!r} in environment {environment!r} is at "
                f"revision {int(reply[1])}, not {expected_revision}: reload and retry"
            )
        if outcome == "notfound":
            raise NotFound(f"no baseline with id {_s(reply[1])!r} for model {model!r}")
        state = PointerState(active, tuple(history), int(reply[2]))
        assert entry is not None
        return state, entry

    # -- audit -------------------------------------------------------------------

    def _audit_of(self, model: str, environment: str | None, limit: int) -> list[AuditEntry]:
        """Newest ``limit`` entries of one model's chain (newest first)."""
        key = self._chain_keys(model)[0]
        page = max(limit, 64)
        found: list[AuditEntry] = []
        top: str = "+"
        while len(found) < limit:
            rows = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self._client.xrevrange(key, max=top, min="-", count=page),
            )
            for stream_id, fields in rows:
                entry = dataclasses.replace(
                    AuditEntry.from_json(fields[b"entry"]), seq=int(fields[b"seq"])
                )
                if environment is None or entry.environment == environment:
                    found.append(entry)
                top = "(" + _s(stream_id)
            if len(rows) < page:
                break
        return found[:limit]

    def list_audit(
        self,
        model: str | None = None,
        environment: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """The newest ``limit`` matching entries, oldest first: by seq within one
        model; across models (``model=None``) by time, then model, then seq."""
        if limit <= 0:
            return []
        with self._errors():
            models = [model] if model is not None else [*self._models(), ""]
            entries = [e for name in models for e in self._audit_of(name, environment, limit)]
        if model is not None:
            entries.sort(key=lambda e: e.seq)
        else:
            entries.sort(key=lambda e: (e.time, e.model, e.seq))
        return entries[-limit:]

    def _audited_write(
        self, chain: str, audit: AuditDraft, target: tuple[str, str, str] | None = None
    ) -> AuditEntry:
        """Append ``audit`` to ``chain``, with one optional (hash key, field, value)
        write in the same script ('' value: delete the field)."""
        keys = self._chain_keys(chain)
        args: list[Any] = []
        if target is not None:
            keys.append(target[0])
            args += (target[1], target[2])
        with self._errors():
            if chain:
                self._client.sadd(self._models_key(), chain)  # global index first
            _, entry = self._sealed("audited_write", chain, keys, 0, args, audit)
        assert entry is not None
        return entry

    def append_audit(self, audit: AuditDraft) -> AuditEntry:
        """Append to the model's chain (entries without a model: their own chain)."""
        return self._audited_write(audit.model, audit)

    def audit_chains(self, model: str | None = None) -> list[str]:
        """One chain per model, plus "" (entries without a model) when ``model`` is None."""
        if model is not None:
            return [model]
        with self._errors():
            return [*self._models(), ""]

    def read_audit_chain(self, chain: str) -> Iterator[AuditEntry]:
        """The chain's stream in stream order, paged; ``seq`` from each entry's field."""
        key = self._chain_keys(chain)[0]
        low = "-"
        while True:
            with self._errors():
                rows = cast(
                    list[tuple[bytes, dict[bytes, bytes]]],
                    self._client.xrange(key, min=low, max="+", count=1000),
                )
            for _, fields in rows:
                yield dataclasses.replace(
                    AuditEntry.from_json(fields[b"entry"]), seq=int(fields[b"seq"])
                )
            if len(rows) < 1000:
                return
            low = "(" + _s(rows[-1][0])

    def audit_head(self, chain: str) -> tuple[int, str]:
        """(seq, hash) of the chain's newest entry, from its seq and head keys."""
        _, seq_key, head_key = self._chain_keys(chain)
        with self._errors():
            seq, head = self._client.mget([seq_key, head_key])
        return int(seq or 0), _s(head or b"")

    # -- governance --------------------------------------------------------------

    def get_policy(self, model: str, environment: str) -> Policy:
        """The stored policy (hash ``{model}:policy``), or the default one."""
        with self._errors():
            raw = self._client.hget(f"{self._m(model)}:policy", environment)
        return Policy(model, environment) if raw is None else Policy.from_json(cast(bytes, raw))

    def set_policy(self, policy: Policy, audit: AuditDraft) -> AuditEntry:
        """Write the policy and its audit entry with one script in the model's slot."""
        _check_scope(policy.model, policy.environment)
        key = f"{self._m(policy.model)}:policy"
        return self._audited_write(policy.model, audit, (key, policy.environment, policy.to_json()))

    def put_pending(self, pending: PendingApproval, audit: AuditDraft) -> AuditEntry:
        """Write the pending approval (hash ``{model}:pending``) and its audit entry."""
        _check_scope(pending.model, pending.environment)
        key = f"{self._m(pending.model)}:pending"
        return self._audited_write(
            pending.model, audit, (key, pending.baseline_id, pending.to_json())
        )

    def list_pending(
        self, model: str | None = None, environment: str | None = None
    ) -> list[PendingApproval]:
        """Pending approvals, oldest request first."""
        out: list[PendingApproval] = []
        with self._errors():
            for name in [model] if model is not None else self._models():
                raw = cast(dict[bytes, bytes], self._client.hgetall(f"{self._m(name)}:pending"))
                out += [PendingApproval.from_json(v) for v in raw.values()]
        if environment is not None:
            out = [p for p in out if p.environment == environment]
        out.sort(key=lambda p: (p.requested_at, p.baseline_id))
        return out

    def delete_pending(self, model: str, baseline_id: str) -> None:
        """Forget a pending approval."""
        with self._errors():
            self._client.hdel(f"{self._m(model)}:pending", baseline_id)

    # -- change events -----------------------------------------------------------

    def _events_key(self, model: str) -> str:
        return f"{self._m(model)}:events"

    def append_event(
        self, record: EventRecord, *, retention_seconds: float = DEFAULT_EVENT_RETENTION
    ) -> EventRecord:
        """``XADD`` to the model's event stream (capped by ``MAXLEN``), then
        ``XTRIM MINID``: entries recorded more than retention ago go."""
        if not record.model:
            raise InvalidInput("model name must not be empty")
        claim = ""
        if record.id:
            # A caller-chosen id (a CloudEvent's, derived from source + id) is
            # claimed first with SET NX: of two concurrent appends one wins, the
            # other gets AlreadyExists. The claim lives as long as the retention.
            claim = f"{self._prefix}:event-id:{_q(record.id)}"
        else:
            record = dataclasses.replace(record, id=f"ev-{uuid.uuid4().hex[:20]}")
        key = self._events_key(record.model)
        # Stream ids are arrival times (ms); an event's time is never after its
        # arrival by more than the clock skew, so trimming by arrival keeps
        # everything whose event time is within retention.
        now = record.recorded_at or self._clock()
        cutoff = now - retention_seconds
        min_id = max(0, int(cutoff * 1000)) if math.isfinite(cutoff) else 0
        with self._errors():
            if claim:
                ttl_ms = (
                    max(1, int(retention_seconds * 1000))
                    if math.isfinite(retention_seconds)
                    else None
                )
                if not self._client.set(claim, record.model, nx=True, px=ttl_ms):
                    raise AlreadyExists(f"an event with id {record.id!r} already exists")
            try:
                self._client.sadd(self._models_key(), record.model)  # global index first
                pipe = self._client.pipeline(transaction=True)  # one key: one slot
                pipe.xadd(
                    key,
                    {"id": record.id, "entry": record.to_json()},
                    maxlen=self._max_events,
                    approximate=True,
                )
                if min_id:
                    pipe.xtrim(key, minid=f"{min_id}-0", approximate=False)
                pipe.execute()
            except BaseException:
                if claim:  # the event was not stored: free its id for a retry
                    with contextlib.suppress(Exception):
                        self._client.delete(claim)
                raise
        return record

    def _event_attrs_key(self, model: str) -> str:
        return f"{self._m(model)}:event-attrs"

    def _stream_events(self, model: str) -> list[EventRecord]:
        key = self._events_key(model)
        out: list[EventRecord] = []
        low = "-"
        while True:
            rows = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self._client.xrange(key, min=low, max="+", count=1000),
            )
            out += [EventRecord.from_json(fields[b"entry"]) for _, fields in rows]
            if len(rows) < 1000:
                return out
            low = "(" + _s(rows[-1][0])

    def _events_of(self, model: str) -> list[EventRecord]:
        """The model's events, with attribute updates (the side hash) merged in.

        The hash is read before the stream: an id in the hash that the stream no
        longer holds was trimmed away, and its updates are deleted here."""
        raw = cast(dict[bytes, bytes], self._client.hgetall(self._event_attrs_key(model)))
        events = self._stream_events(model)
        if not raw:
            return events
        updates = {_s(k): json.loads(v) for k, v in raw.items()}
        out = [
            dataclasses.replace(e, attributes={**e.attributes, **updates.pop(e.id)})
            if e.id in updates
            else e
            for e in events
        ]
        if updates:  # orphans of trimmed events
            self._client.hdel(self._event_attrs_key(model), *updates)
        return out

    def list_events(
        self,
        model: str | None,
        environment: str | None,
        start: float,
        end: float,
        limit: int,
        *,
        types: Sequence[str] = (),
    ) -> list[EventRecord]:
        """The newest ``limit`` matching events, oldest first by time, then id."""
        if limit <= 0:
            return []
        wanted = set(types)
        with self._errors():
            models = [model] if model is not None else self._models()
            found = [
                e
                for name in models
                for e in self._events_of(name)
                if start <= e.time < end
                and (environment is None or e.environment in (environment, ""))
                and (not wanted or e.type in wanted)
            ]
        found.sort(key=lambda e: (e.time, e.id))
        return found[-limit:]

    def update_event_attributes(
        self, model: str, event_id: str, attributes: Mapping[str, str]
    ) -> EventRecord:
        """Stream entries cannot change: the updates go to the side hash
        ``{prefix}:{model}:event-attrs`` (field: event id, value: the JSON of all
        updated attributes), merged into the event when it is read. The merge is
        optimistic (``WATCH``) so concurrent updates of one event both count."""
        key = self._event_attrs_key(model)
        with self._errors():
            current = next((e for e in self._events_of(model) if e.id == event_id), None)
            if current is None:
                raise NotFound(f"model {model!r} has no event {event_id!r}")
            with self._client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        raw = cast(bytes | None, pipe.hget(key, event_id))
                        merged = {**(json.loads(raw) if raw else {}), **attributes}
                        pipe.multi()
                        pipe.hset(key, event_id, json.dumps(merged, sort_keys=True))
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
        return dataclasses.replace(current, attributes={**current.attributes, **merged})

    # -- fleet mode --------------------------------------------------------------

    def _lease_key(self, model: str, environment: str) -> str:
        return f"{self._m(model)}:lease:{_q(environment)}"

    def acquire_lease(
        self, model: str, environment: str, holder: str, ttl_seconds: float
    ) -> int | None:
        """``SET lease "token holder" NX PX ttl`` with ``token = INCR`` of the
        (model, environment)'s counter, in one script on the model's slot."""
        _check_scope(model, environment)
        ms = _lease_ms(holder, ttl_seconds)
        keys = [
            self._lease_key(model, environment),
            f"{self._m(model)}:lease-seq:{_q(environment)}",
        ]
        with self._errors():
            token = self._eval("acquire_lease", keys, [holder, ms])
        return None if token is None else int(token)

    def renew_lease(
        self, model: str, environment: str, holder: str, token: int, ttl_seconds: float
    ) -> bool:
        """Compare-and-renew: ``PEXPIRE`` only while the lease is still ours."""
        ms = _lease_ms(holder, ttl_seconds)
        key = self._lease_key(model, environment)
        with self._errors():
            return bool(self._eval("renew_lease", [key], [f"{int(token)} {holder}", ms]))

    def release_lease(self, model: str, environment: str, holder: str, token: int) -> bool:
        """Compare-and-delete."""
        key = self._lease_key(model, environment)
        with self._errors():
            return bool(self._eval("renew_lease", [key], [f"{int(token)} {holder}", 0]))

    def lease_holder(self, model: str, environment: str) -> tuple[str, int] | None:
        """(holder, token) of the live lease, or None."""
        with self._errors():
            raw = self._client.get(self._lease_key(model, environment))
        if raw is None:
            return None
        token, _, holder = _s(cast(bytes, raw)).partition(" ")
        return holder, int(token)

    def write_alert_state(
        self, model: str, environment: str, holder: str, token: int, state: bytes
    ) -> None:
        """``HSET {model}:alerts environment state`` in a script that first checks
        the lease still holds (holder, token)."""
        _check_scope(model, environment)
        keys = [self._lease_key(model, environment), f"{self._m(model)}:alerts"]
        with self._errors():
            self._client.sadd(self._models_key(), model)  # global index first
            done = self._eval("fenced_alerts", keys, [f"{int(token)} {holder}", environment, state])
        if not done:
            raise Conflict(
                f"lease of {model}/{environment} is no longer held by {holder!r} with token"
                f" {token}: alert state not written"
            )

    def read_alert_states(self, model: str | None = None) -> dict[tuple[str, str], bytes]:
        """Every model's alert state hash (one ``HGETALL`` per model, pipelined)."""
        with self._errors():
            models = [model] if model is not None else self._models()
            pipe = self._client.pipeline(transaction=False)
            for name in models:
                pipe.hgetall(f"{self._m(name)}:alerts")
            found = cast(list[dict[bytes, bytes]], pipe.execute()) if models else []
        return {
            (name, _s(env)): bytes(state)
            for name, states in zip(models, found, strict=True)
            for env, state in states.items()
        }

    # -- outcomes (issue 8) ------------------------------------------------------
    #
    # Predictions live in one hash per time bucket of arrival (``{m}:pred:<start>``,
    # width: the horizon / 168, at least a minute) with a TTL, indexed by a zset
    # (``{m}:pred``); all keys share the model's hash tag. Outcome claims are one
    # ``SET NX EX`` string per request id (``{m}:claim:<id>``).

    @staticmethod
    def _prediction_width(ttl_seconds: int) -> int:
        return max(60, math.ceil(ttl_seconds / _PREDICTION_BUCKETS))

    def put_predictions(
        self,
        model: str,
        records: Sequence[tuple[str, bytes]],
        *,
        ttl_seconds: int,
        max_records: int,
    ) -> int:
        """Keep prediction records by request id; see ``Store.put_predictions``."""
        check_prediction_args(model, ttl_seconds, max_records)
        if not records:
            return 0
        width = self._prediction_width(ttl_seconds)
        now = self._clock()
        bucket = math.floor(now / width) * width
        stem = f"{self._m(model)}:pred:"
        cutoff = now - ttl_seconds - width
        args: list[Any] = [cutoff, str(bucket), max_records, ttl_seconds + width, stem]
        for rid, data in records:
            args.extend((rid, data))
        with self._errors():
            evicted = self._eval(
                "put_predictions", [f"{self._m(model)}:pred", f"{stem}{bucket}"], args
            )
        return int(evicted)

    def get_predictions(self, model: str, request_ids: Sequence[str]) -> dict[str, bytes]:
        """Kept, unexpired prediction records of these request ids (the first kept wins)."""
        ids = list(dict.fromkeys(request_ids))
        if not ids or not model:
            return {}
        stem = f"{self._m(model)}:pred:"
        with self._errors():
            buckets = [
                _s(b)
                for b in cast(list[bytes], self._client.zrange(f"{self._m(model)}:pred", 0, -1))
            ]
            if not buckets:
                return {}

            def build(pipe: Any) -> None:
                for b in buckets:
                    pipe.hmget(f"{stem}{b}", ids)

            rows = self._pipelined(build)
        found: dict[str, bytes] = {}
        for values in rows:  # oldest bucket first
            for rid, value in zip(ids, values, strict=True):
                if value is not None and rid not in found:
                    found[rid] = bytes(value)
        return found

    def claim_outcomes(
        self, model: str, request_ids: Sequence[str], *, ttl_seconds: int
    ) -> list[bool]:
        """Claim the outcome of each request id; True where this call claimed it first."""
        if not model:
            raise InvalidInput("model name must not be empty")
        check_ttl(ttl_seconds)
        if not request_ids:
            return []
        stem = f"{self._m(model)}:claim:"
        seen: set[str] = set()

        def build(pipe: Any) -> None:
            for rid in request_ids:
                pipe.set(f"{stem}{_q(rid)}", b"1", nx=True, ex=ttl_seconds)

        with self._errors():
            results = self._pipelined(build)
        claimed: list[bool] = []
        for rid, ok in zip(request_ids, results, strict=True):
            first = bool(ok) and rid not in seen  # an id twice in one call: the first wins
            seen.add(rid)
            claimed.append(first)
        return claimed

    # -- impact reports ----------------------------------------------------------
    #
    # Per model (one hash tag): a hash ``{prefix}:{model}:impact`` (report id ->
    # JSON) and a sorted set ``{prefix}:{model}:impact:time`` (report id, score
    # the event time) for ranges and retention; a global hash
    # ``{prefix}:impact-ids`` (report id -> model) answers GetImpactReport.

    def _impact_keys(self, model: str) -> tuple[str, str]:
        stem = self._m(model)
        return f"{stem}:impact", f"{stem}:impact:time"

    def _impact_ids_key(self) -> str:
        return f"{self._prefix}:impact-ids"

    def put_impact_report(
        self, record: ImpactRecord, *, retention_seconds: float = DEFAULT_EVENT_RETENTION
    ) -> None:
        """Upsert the report (one MULTI in the model's slot); reports whose event
        is past retention are dropped from the model's keys and the id index."""
        if not record.model or not record.id:
            raise InvalidInput("an impact report needs an id and a model")
        data, times = self._impact_keys(record.model)
        cutoff = self._clock() - retention_seconds
        with self._errors():
            self._client.sadd(self._models_key(), record.model)  # global index first
            self._client.hset(self._impact_ids_key(), record.id, record.model)
            old: list[bytes] = []
            if math.isfinite(cutoff):
                old = cast(list[bytes], self._client.zrangebyscore(times, "-inf", f"({cutoff}"))
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(data, record.id, record.to_json())
            pipe.zadd(times, {record.id: float(record.event.time)})
            if old:
                pipe.hdel(data, *old)
                pipe.zrem(times, *old)
            pipe.execute()
            if old:
                self._client.hdel(self._impact_ids_key(), *old)

    def get_impact_report(self, report_id: str) -> ImpactRecord:
        """The stored report; NotFound otherwise."""
        with self._errors():
            model = self._client.hget(self._impact_ids_key(), report_id)
            raw = (
                None
                if model is None
                else self._client.hget(self._impact_keys(_s(cast(bytes, model)))[0], report_id)
            )
        if raw is None:
            raise NotFound(f"no impact report with id {report_id!r}")
        return ImpactRecord.from_json(cast(bytes, raw))

    def list_impact_reports(
        self,
        model: str | None,
        environment: str | None,
        start: float,
        end: float,
        limit: int,
        *,
        verdicts: Sequence[str] = (),
    ) -> list[ImpactRecord]:
        """The newest ``limit`` matching reports, oldest first by event time, then id."""
        if limit <= 0:
            return []
        wanted = set(verdicts)
        found: list[ImpactRecord] = []
        with self._errors():
            for name in [model] if model is not None else self._models():
                data, times = self._impact_keys(name)
                ids = cast(
                    list[bytes],
                    self._client.zrangebyscore(
                        times, start, f"({end}" if math.isfinite(end) else "+inf"
                    ),
                )
                if not ids:
                    continue
                raws = cast(list[bytes | None], self._client.hmget(data, ids))
                for raw in raws:
                    if raw is None:
                        continue
                    report = ImpactRecord.from_json(raw)
                    if (environment is None or report.environment == environment) and (
                        not wanted or report.verdict in wanted
                    ):
                        found.append(report)
        found.sort(key=lambda r: (r.event.time, r.id))
        return found[-limit:]

    # -- lifecycle ---------------------------------------------------------------

    def ping(self) -> None:
        """Return when Redis answers PING; raise ``StoreUnavailable`` otherwise."""
        with self._errors():
            self._client.ping()

    def close(self) -> None:
        """Close the connection pool (unless the client was passed in). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()
