"""TLS and mTLS for the sidecar's listeners, with certificates that reload.

:class:`TlsFiles` holds the paths of the server certificate chain, its key and,
for mTLS, the CA that client certificates must chain to. The gRPC server gets
:meth:`TlsFiles.grpc_credentials` (a certificate-configuration fetcher: gRPC asks
for it on new handshakes, and it returns a new configuration when a file's
modification time changed); the HTTP listener gets :meth:`TlsFiles.ssl_context`,
whose SNI hook swaps in a freshly loaded context when the files changed.
Established connections keep the certificate they were opened with.

>>> # files = TlsFiles(cert="server.pem", key="server.key", client_ca="ca.pem")
>>> # server.add_secure_port("0.0.0.0:50051", files.grpc_credentials())
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc

from sidecar.errors import ConfigError

__all__ = ["TlsFiles"]

log = logging.getLogger(__name__)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot read it: {err.strerror}") from err


@dataclass
class TlsFiles:
    """Paths of a server certificate chain, its private key and an optional client CA."""

    cert: str
    key: str
    client_ca: str = ""
    _stamps: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _ctx: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.cert or not self.key:
            raise ConfigError("settings 'tls_cert' and 'tls_key' must be given together")
        stamp = self._stat()
        self._stamps = {"grpc": stamp, "http": stamp}
        self._load()  # fail at start on unreadable files

    @property
    def mutual(self) -> bool:
        """True when client certificates are required (``client_ca`` set)."""
        return bool(self.client_ca)

    def _paths(self) -> list[str]:
        return [p for p in (self.cert, self.key, self.client_ca) if p]

    def _stat(self) -> tuple[int, ...]:
        stamp: list[int] = []
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError as err:
                raise ConfigError(f"TLS file {path}: cannot read it: {err.strerror}") from err
            stamp += [st.st_mtime_ns, st.st_size, st.st_ino]
        return tuple(stamp)

    def _load(self) -> tuple[bytes, bytes, bytes | None]:
        chain = _read(self.cert, "tls_cert")
        key = _read(self.key, "tls_key")
        ca = _read(self.client_ca, "tls_client_ca") if self.client_ca else None
        return chain, key, ca

    def changed(self, consumer: str) -> bool:
        """True (once per ``consumer``: grpc, http) when a file changed since its last load."""
        try:
            stamp = self._stat()
        except ConfigError as err:
            log.error("TLS files unreadable; keeping the loaded certificates: %s", err)
            return False
        with self._lock:
            if stamp == self._stamps.get(consumer):
                return False
            self._stamps[consumer] = stamp
            return True

    # -- gRPC ------------------------------------------------------------------

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        chain, key, ca = self._load()
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up changed certificate files on new handshakes."""

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if not self.changed("grpc"):
                return None
            try:
                config = self._grpc_config()
            except ConfigError as err:
                log.error("cannot reload the TLS certificates: %s", err)
                return None
            log.info("reloaded the gRPC TLS certificate from %s", self.cert)
            return config

        # The fetcher returns None for "unchanged" (grpc docs); the stubs do not say so.
        fetcher: Any = fetch
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(), fetcher, require_client_authentication=self.mutual
        )

    # -- HTTP ------------------------------------------------------------------

    def _new_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
            if self.client_ca:
                ctx.load_verify_locations(cafile=self.client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"TLS files {self.cert}, {self.key}: {err}") from err
        return ctx

    def ssl_context(self) -> ssl.SSLContext:
        """A server SSLContext (mTLS when ``client_ca`` is set) that reloads changed files."""
        outer = self._new_context()
        self._ctx = outer

        def on_hello(
            sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            if self.changed("http"):
                try:
                    self._ctx = self._new_context()
                    log.info("reloaded the HTTP TLS certificate from %s", self.cert)
                except ConfigError as err:
                    log.error("cannot reload the TLS certificates: %s", err)
            if self._ctx is not None and self._ctx is not outer:
                sock.context = self._ctx

        outer.sni_callback = on_hello
        return outer
