"""Who is calling and what they may do: principals, roles and the gRPC interceptor.

Three roles: ``ingest`` (send samples), ``read`` (queries and watches) and
``admin`` (freeze, promote, roll back, retire, record events, approve, change
policy, import, export). Roles do not imply each other: an operator who should
read and govern gets ``roles = ["read", "admin"]``.

Principals come from a principals file (``auth_tokens_file``, TOML
``[[principal]]`` tables or JSON lines) and/or the ``auth_tokens`` setting
(``BASELINED_AUTH_TOKENS``, JSON). Each entry has a ``name``, ``roles`` and
either ``token_sha256`` (the hex SHA-256 of a bearer token: tokens are never
stored in clear; ``baselined auth hash-token`` prints it) with an optional
``expires_at`` (unix seconds or ISO-8601), or ``cert_subject = "CN=..."``
mapping an mTLS client certificate to the principal. The file is re-read when
it changes (polled every ``auth_reload_interval`` seconds on the call path),
so tokens rotate without a restart; a broken edit is logged and the previous
table stays in force.

:class:`AuthInterceptor` checks every RPC against :data:`REQUIRED_ROLE` and sets
:func:`current_principal` for the duration of the call.

>>> hash_token("s3cret")[:16]
'1ec1c26b50d5d3c5'
>>> REQUIRED_ROLE["/baselined.v1.Baselines/FreezeBaseline"]
'admin'
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ipaddress
import json
import logging
import os
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import grpc.aio

from sidecar.errors import BaselinedError, ConfigError
from sidecar.timeparse import parse_time

__all__ = [
    "OPEN_PREFIXES",
    "REQUIRED_ROLE",
    "ROLES",
    "AuthDenied",
    "AuthInterceptor",
    "DeniedHook",
    "Entry",
    "Principal",
    "PrincipalTable",
    "current_principal",
    "hash_token",
    "interceptor_from_settings",
    "is_local_address",
    "parse_principals",
    "using_principal",
]

log = logging.getLogger(__name__)

ROLES: frozenset[str] = frozenset({"ingest", "read", "admin"})

_B = "/baselined.v1."
REQUIRED_ROLE: dict[str, str] = {
    _B + "Ingest/Ingest": "ingest",
    _B + "Ingest/IngestBatch": "ingest",
    _B + "Baselines/FreezeBaseline": "admin",
    _B + "Baselines/GetBaseline": "read",
    _B + "Baselines/ListBaselines": "read",
    _B + "Baselines/PromoteBaseline": "admin",
    _B + "Baselines/RollbackBaseline": "admin",
    _B + "Baselines/RetireBaseline": "admin",
    _B + "Baselines/GetActiveBaseline": "read",
    _B + "Baselines/GetWindow": "read",
    _B + "Baselines/ListAudit": "read",
    _B + "Alerts/ListAlerts": "read",
    _B + "Alerts/WatchAlerts": "read",
    _B + "Alerts/Compare": "read",
    _B + "Events/RecordEvent": "admin",
    _B + "Events/ListEvents": "read",
    _B + "Impact/GetImpactReport": "read",
    _B + "Impact/ListImpactReports": "read",
    _B + "Governance/GetPolicy": "read",
    _B + "Governance/SetPolicy": "admin",
    _B + "Governance/ListPending": "read",
    _B + "Governance/ApproveBaseline": "admin",
    _B + "Governance/VerifyAudit": "read",
    # An export carries every series digest of a baseline: data, so admin only.
    _B + "Governance/ExportBaseline": "admin",
    _B + "Governance/ImportBaseline": "admin",
    _B + "Governance/DiffBaselines": "read",
    # Outcomes (issue 8): labels are data sent by the model's side, like samples.
    _B + "Outcomes/RecordOutcomes": "ingest",
    _B + "Outcomes/GetQuality": "read",
}
"""The role each RPC needs, by full gRPC method name. A method missing here
(and not under :data:`OPEN_PREFIXES`) is refused to everyone."""

OPEN_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods served without credentials: health checks and reflection."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``via`` is ``token`` or ``mtls``."""

    name: str
    roles: frozenset[str]
    via: str


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "baselined_principal", default=None
)


def current_principal() -> Principal | None:
    """The principal of the RPC being served, or None (open mode, or outside a call)."""
    return _current.get()


class using_principal:
    """Set :func:`current_principal` inside a ``with`` block (the interceptor, tests)."""

    def __init__(self, principal: Principal | None) -> None:
        self._principal = principal
        self._token: contextvars.Token[Principal | None] | None = None

    def __enter__(self) -> Principal | None:
        self._token = _current.set(self._principal)
        return self._principal

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)


def hash_token(token: str) -> str:
    """The hex SHA-256 of a bearer token, as stored in the principals file."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


class AuthDenied(BaselinedError):
    """A call was refused. ``code`` is UNAUTHENTICATED or PERMISSION_DENIED;
    ``rule`` names the rule that refused it (for logs and audit)."""

    def __init__(self, code: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.grpc_code = code
        self.rule = rule
        self.principal: Principal | None = None  # who was refused a role, when known


@dataclass(frozen=True)
class Entry:
    """One line of the principals file: a token hash or a certificate subject."""

    name: str
    roles: frozenset[str]
    token_sha256: str = ""
    cert_subject: str = ""
    expires_at: float | None = None


def _entry(raw: Any, where: str) -> Entry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a principal must be a table/object, got {type(raw).__name__}")
    unknown = set(raw) - {"name", "roles", "token_sha256", "cert_subject", "expires_at"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    roles = raw.get("roles")
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise ConfigError(f"{where} ({name}): 'roles' must be a non-empty list of role names")
    bad = sorted(set(roles) - ROLES)
    if bad:
        raise ConfigError(
            f"{where} ({name}): unknown role(s) {', '.join(bad)}; use ingest, read or admin"
        )
    digest = raw.get("token_sha256", "")
    subject = raw.get("cert_subject", "")
    if not isinstance(digest, str) or not isinstance(subject, str):
        raise ConfigError(f"{where} ({name}): token_sha256 and cert_subject must be strings")
    digest = digest.strip().lower()
    if bool(digest) == bool(subject):
        raise ConfigError(f"{where} ({name}): give exactly one of token_sha256 or cert_subject")
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise ConfigError(
            f"{where} ({name}): token_sha256 must be 64 hex digits"
            " (the hash, not the token: see 'baselined auth hash-token')"
        )
    if subject and not subject.startswith("CN="):
        raise ConfigError(f"{where} ({name}): cert_subject must look like CN=<common name>")
    expires = raw.get("expires_at")
    expires_at: float | None = None
    if expires is not None:
        try:
            if isinstance(expires, datetime):
                expires_at = parse_time(expires.isoformat())
            elif isinstance(expires, int | float) and not isinstance(expires, bool):
                expires_at = float(expires)
            else:
                expires_at = parse_time(str(expires))
        except ValueError as err:
            raise ConfigError(f"{where} ({name}): expires_at: {err}") from err
    return Entry(name.strip(), frozenset(roles), digest, subject.strip(), expires_at)


def parse_principals(text: str, *, source: str) -> list[Entry]:
    """Entries from TOML (``[[principal]]`` tables) or JSON (lines of objects, or
    one array); ConfigError names ``source`` and the bad entry."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("[") and not stripped.startswith("[["):  # a JSON array
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: not a valid JSON array: {err}") from err
        items = loaded if isinstance(loaded, list) else [loaded]
        return [_entry(item, f"{source} entry {i + 1}") for i, item in enumerate(items)]
    if stripped.startswith("{"):  # JSON lines
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{source} line {number}: not valid JSON: {err}") from err
            entries.append(_entry(item, f"{source} line {number}"))
        return entries
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML or JSON lines: {err}") from err
    tables = data.get("principal", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: expected [[principal]] tables")
    return [_entry(item, f"{source} [[principal]] {i + 1}") for i, item in enumerate(tables)]


class PrincipalTable:
    """Bearer-token hashes and certificate subjects, from a file and/or inline text.

    ``path`` is re-read when its modification time, size or inode change, checked
    at most every ``reload_interval`` seconds (0: on every call). ``clock`` gives
    unix seconds for expiry and polling.
    """

    def __init__(
        self,
        *,
        path: str = "",
        inline: str = "",
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._inline = parse_principals(inline, source="auth_tokens") if inline else []
        self._reload_interval = reload_interval
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._tokens: dict[str, list[Entry]] = {}
        self._subjects: dict[str, Entry] = {}
        self._file: list[Entry] = []
        if path:
            self._stamp = self._stat()
            self._file = self._read()
        self._index()

    @property
    def entries(self) -> list[Entry]:
        """Every entry in force."""
        return [*self._inline, *self._file]

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as err:
            raise ConfigError(
                f"auth_tokens_file {self.path}: cannot read it: {err.strerror}"
            ) from err
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> list[Entry]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise ConfigError(
                f"auth_tokens_file {self.path}: cannot read it: {err.strerror}"
            ) from err
        return parse_principals(text, source=f"auth_tokens_file {self.path}")

    def _index(self) -> None:
        tokens: dict[str, list[Entry]] = {}
        subjects: dict[str, Entry] = {}
        for e in self.entries:
            if e.token_sha256:
                tokens.setdefault(e.token_sha256, []).append(e)
            else:
                subjects[e.cert_subject] = e
        self._tokens, self._subjects = tokens, subjects

    def maybe_reload(self) -> bool:
        """Re-read the file when it changed; True when the table was replaced."""
        if not self.path:
            return False
        now = self._clock()
        if self._reload_interval > 0 and now - self._checked < self._reload_interval:
            return False
        self._checked = now
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            entries = self._read()
        except ConfigError as err:
            if self._stamp is not None:  # log once per broken state
                log.error("keeping the previous principals: %s", err)
            self._stamp = None
            return False
        self._stamp, self._file = stamp, entries
        self._index()
        log.info("reloaded %d principals from %s", len(entries), self.path)
        return True

    def by_token(self, token: str) -> Principal:
        """The principal of a bearer token; AuthDenied(UNAUTHENTICATED) if unknown or expired."""
        self.maybe_reload()
        entries = self._tokens.get(hash_token(token))
        if not entries:
            raise AuthDenied("UNAUTHENTICATED", "unknown_token", "the bearer token is not known")
        now = self._clock()
        live = [e for e in entries if e.expires_at is None or e.expires_at > now]
        if not live:
            when = datetime.fromtimestamp(max(e.expires_at or 0.0 for e in entries))
            raise AuthDenied(
                "UNAUTHENTICATED",
                "expired_token",
                f"the bearer token of {entries[0].name!r} expired at {when.isoformat()}",
            )
        roles = frozenset().union(*(e.roles for e in live))
        return Principal(live[0].name, roles, "token")

    def by_subject(self, common_name: str) -> Principal:
        """The principal of an mTLS client certificate's common name."""
        self.maybe_reload()
        entry = self._subjects.get(f"CN={common_name}")
        if entry is None:
            raise AuthDenied(
                "UNAUTHENTICATED",
                "unknown_certificate",
                f"the client certificate subject CN={common_name} maps to no principal",
            )
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            raise AuthDenied(
                "UNAUTHENTICATED",
                "expired_certificate_mapping",
                f"the principal {entry.name!r} of CN={common_name} expired",
            )
        return Principal(entry.name, entry.roles, "mtls")


def is_local_address(address: str) -> bool:
    """True for a Unix socket or a loopback ``host:port`` (``localhost``, 127/8, ::1).

    >>> is_local_address("127.0.0.1:50051"), is_local_address("unix:/run/b.sock")
    (True, True)
    >>> is_local_address("0.0.0.0:50051"), is_local_address("[::]:1")
    (False, False)
    """
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DeniedHook = Callable[[Principal | None, str, str], None]
"""``on_denied(principal_or_none, method, reason)``: called for every refused call."""


def _bearer(metadata: Iterable[tuple[str, Any]]) -> str | None:
    for key, value in metadata:
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthDenied(
                    "UNAUTHENTICATED",
                    "malformed_authorization",
                    "malformed authorization metadata: expected 'Bearer <token>'",
                )
            return token.strip()
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every call whose principal lacks the role :data:`REQUIRED_ROLE` names.

    A bearer token (``authorization: Bearer <token>``) wins over the client
    certificate. Denials abort with UNAUTHENTICATED (no, unknown, expired or
    malformed credentials) or PERMISSION_DENIED (wrong role), are logged and
    passed to ``on_denied`` (set it after construction to audit them).
    """

    def __init__(
        self,
        table: PrincipalTable,
        *,
        required_role: Mapping[str, str] = REQUIRED_ROLE,
        on_denied: DeniedHook | None = None,
    ) -> None:
        self.table = table
        self.required_role = dict(required_role)
        self.on_denied = on_denied

    def authorize(
        self, method: str, metadata: Iterable[tuple[str, Any]], cn: str | None
    ) -> Principal:
        """The principal allowed to call ``method``, or AuthDenied."""
        role = self.required_role.get(method)
        if role is None:
            self.authenticate(metadata, cn)  # unauthenticated callers learn that first
            raise AuthDenied("PERMISSION_DENIED", "no_rule", f"{method} has no role rule")
        return self.check_role(role, method.rsplit("/", 1)[-1], metadata, cn)

    def authenticate(self, metadata: Iterable[tuple[str, Any]], cn: str | None) -> Principal:
        """The principal of a bearer token in ``metadata`` (``authorization``), else of
        the client certificate common name ``cn``; AuthDenied(UNAUTHENTICATED) otherwise."""
        token = _bearer(metadata)
        if token is not None:
            principal = self.table.by_token(token)
        elif cn is not None:
            principal = self.table.by_subject(cn)
        else:
            raise AuthDenied(
                "UNAUTHENTICATED",
                "no_credentials",
                "no credentials: send 'authorization: Bearer <token>' metadata"
                " (--token, BASELINED_TOKEN) or a client certificate",
            )
        return principal

    def check_role(
        self, role: str, what: str, metadata: Iterable[tuple[str, Any]], cn: str | None
    ) -> Principal:
        """The authenticated principal when it holds ``role``; AuthDenied otherwise
        (PERMISSION_DENIED carries the principal as ``denied.principal``). ``what``
        names the call in the message (``FreezeBaseline``, ``POST /v1/events``)."""
        principal = self.authenticate(metadata, cn)
        if role not in principal.roles:
            denied = AuthDenied(
                "PERMISSION_DENIED",
                f"role_{role}_required",
                f"{what} needs the {role!r} role;"
                f" principal {principal.name!r} has {', '.join(sorted(principal.roles))}",
            )
            denied.principal = principal
            raise denied
        return principal

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        return _wrap(handler, lambda context: self._check(method, context))

    async def _check(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        cn: str | None = None
        auth = context.auth_context() or {}
        names = list(auth.get("x509_common_name", ()))
        if names:
            cn = names[0].decode("utf-8", "replace")
        try:
            return self.authorize(method, context.invocation_metadata() or (), cn)
        except AuthDenied as denied:
            principal: Principal | None = None
            if denied.grpc_code == "PERMISSION_DENIED":
                principal = self._who(context, cn)
            await self.report_denied(principal, method, denied, peer=context.peer())
            await context.abort(getattr(grpc.StatusCode, denied.grpc_code), str(denied))
            raise  # abort raises; this keeps type checkers sure we never return

    async def report_denied(
        self, principal: Principal | None, method: str, denied: AuthDenied, *, peer: str = ""
    ) -> None:
        """Log one refusal and hand it to :attr:`on_denied` (in a worker thread; a
        failing hook is logged, never raised). ``method`` is the gRPC method or
        the HTTP ``METHOD /path``."""
        log.warning(
            "refused %s from %s (%s): %s",
            method,
            principal.name if principal else peer or "an unauthenticated caller",
            denied.rule,
            denied,
        )
        hook = self.on_denied
        if hook is not None:
            try:
                await asyncio.to_thread(hook, principal, method, f"{denied.rule}: {denied}")
            except Exception:
                log.warning("the on_denied hook failed", exc_info=True)

    def _who(self, context: grpc.aio.ServicerContext[Any, Any], cn: str | None) -> Principal | None:
        try:
            token = _bearer(context.invocation_metadata() or ())
            if token is not None:
                return self.table.by_token(token)
            return self.table.by_subject(cn) if cn is not None else None
        except AuthDenied:
            return None


Check = Callable[[Any], Awaitable[Principal]]


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any], check: Check
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, with ``check`` run (and the principal set) before the behaviour."""
    h: Any = handler
    if h.unary_unary is not None or h.stream_unary is not None:
        inner = h.unary_unary or h.stream_unary

        async def unary(request: Any, context: Any) -> Any:
            principal = await check(context)
            with using_principal(principal):
                result = inner(request, context)
                if asyncio.iscoroutine(result):
                    result = await result
                return result

        factory = (
            grpc.unary_unary_rpc_method_handler
            if h.unary_unary is not None
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=h.request_deserializer,
            response_serializer=h.response_serializer,
        )
    inner_stream = h.unary_stream or h.stream_stream

    async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
        principal = await check(context)
        with using_principal(principal):
            result = inner_stream(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                result = await result if asyncio.iscoroutine(result) else result
                if result is not None:
                    for item in result:
                        yield item

    factory = (
        grpc.unary_stream_rpc_method_handler
        if h.unary_stream is not None
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(
        streaming,
        request_deserializer=h.request_deserializer,
        response_serializer=h.response_serializer,
    )


def interceptor_from_settings(
    settings: Any, *, clock: Callable[[], float] = time.time
) -> AuthInterceptor | None:
    """The interceptor the settings ask for (principals from ``auth_tokens_file`` /
    ``auth_tokens``, or mTLS), or None in open mode. Raises ConfigError for a bad
    principals file, and when open mode is refused: no authentication configured
    and ``listen`` or ``http_listen`` is not loopback or a Unix socket, unless
    ``allow_open``."""
    configured = bool(settings.auth_tokens_file or settings.auth_tokens or settings.tls_client_ca)
    if configured:
        table = PrincipalTable(
            path=settings.auth_tokens_file,
            inline=settings.auth_tokens,
            reload_interval=settings.auth_reload_interval,
            clock=clock,
        )
        if not table.entries:
            log.warning(
                "authentication is on but no principal is configured: every call is refused"
            )
        return AuthInterceptor(table)
    # Open mode covers every listener that accepts requests: the gRPC one and the
    # HTTP one (/v1/events, /v1/kserve, /metrics). health_listen serves only health.
    exposed = [a for a in (settings.listen, getattr(settings, "http_listen", "")) if a]
    remote = [a for a in exposed if not is_local_address(a)]
    if not remote:
        log.warning(
            "open mode: no authentication configured (auth_tokens_file, auth_tokens,"
            " tls_client_ca); serving without it because %s %s loopback or a Unix socket",
            " and ".join(exposed),
            "is" if len(exposed) == 1 else "are",
        )
        return None
    if not settings.allow_open:
        raise ConfigError(
            f"refusing to serve {' and '.join(remote)} without authentication: not loopback or"
            " a Unix socket. Configure principals (--auth-tokens-file, BASELINED_AUTH_TOKENS) or"
            " mTLS (--tls-client-ca), listen on 127.0.0.1 or unix:/path, or force open mode with"
            " --insecure-open (BASELINED_ALLOW_OPEN=true)"
        )
    log.warning(
        "OPEN MODE on %s: anyone who can reach it may ingest, read and change baselines"
        " (--insecure-open)",
        " and ".join(remote),
    )
    return None
