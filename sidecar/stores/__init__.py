"""Stores behind one :class:`Store` protocol, and :func:`open_store` to pick one by URL.

>>> store = open_store(":memory:")
>>> type(store).__name__
'SQLiteStore'
>>> store.close()
"""

from __future__ import annotations

import inspect
from typing import Any

from sidecar.errors import ConfigError
from sidecar.stores.base import Store
from sidecar.stores.redis import RedisStore
from sidecar.stores.sqlite import SQLiteStore

__all__ = ["RedisStore", "SQLiteStore", "Store", "open_store"]

_SUPPORTED = (
    "sqlite:///relative.db, sqlite:////absolute/path.db, :memory: (or sqlite://:memory:), "
    "redis://[user:password@]host:port/db, rediss://... (TLS), unix:///path/to/redis.sock"
    " or redis+cluster://[user:password@]host:port (Redis Cluster; rediss+cluster:// for TLS)"
)


def _options(cls: type, options: dict[str, Any], url_kind: str) -> None:
    accepted = {
        name
        for name, param in inspect.signature(cls).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"store option(s) {', '.join(unknown)} not understood by a {url_kind} store "
            f"(accepted: {', '.join(sorted(accepted)) or 'none'})"
        )


def open_store(url: str, **options: Any) -> Store:
    """Open the store a URL names; ``options`` go to the store's constructor.

    ``sqlite:///relative.db`` is a file relative to the working directory,
    ``sqlite:////abs/path.db`` an absolute one, ``:memory:`` (or
    ``sqlite://:memory:``) a private in-memory database; ``redis://``,
    ``rediss://`` and ``unix://`` URLs open a :class:`RedisStore`, and
    ``redis+cluster://host:port`` one on Redis Cluster (any node as seed). Anything
    else raises ``ConfigError`` naming the problem.
    """
    url = url.strip()
    if not url:
        raise ConfigError(f"store URL is empty; use one of {_SUPPORTED}")
    if url in (":memory:", "sqlite://:memory:", "sqlite:///:memory:"):
        _options(SQLiteStore, options, "SQLite")
        return SQLiteStore(":memory:", **options)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"store URL {url!r} has no scheme; use one of {_SUPPORTED}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(
                f"SQLite store URL {url!r} has a host part; write sqlite:///relative.db "
                "(three slashes) or sqlite:////absolute/path.db (four)"
            )
        path = rest[1:]
        if not path or path.endswith("/"):
            raise ConfigError(f"SQLite store URL {url!r} names no database file")
        _options(SQLiteStore, options, "SQLite")
        return SQLiteStore(path, **options)
    if scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        _options(RedisStore, options, "Redis")
        return RedisStore(url, **options)
    # The rest of the URL may hold a password: name only the scheme.
    raise ConfigError(f"store URL scheme {scheme!r} is not supported; use one of {_SUPPORTED}")
