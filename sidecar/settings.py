"""Sidecar settings: one object per process.

Each setting resolves, in order: explicit argument (a CLI flag), the
``BASELINED_<NAME>`` environment variable, the config file (TOML, top-level
keys or a ``[sidecar]`` table; path from ``--config`` or ``BASELINED_CONFIG``),
then the default. Values are validated at start; an error names the field and
where its value came from.

>>> s = Settings.resolve({"bucket_seconds": 30}, env={})
>>> s.bucket_seconds
30
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sidecar.errors import ConfigError

__all__ = ["Settings", "default_instance"]

_ENV_PREFIX = "BASELINED_"


def default_instance() -> str:
    """The writer id of this sidecar: the pod name when set, else the host name."""
    return os.environ.get("POD_NAME") or socket.gethostname()


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or greater"


def _ratio(value: float) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def _alpha(value: float) -> str | None:
    return None if 0 <= value < 1 else "must be 0 (use the guardrails file) or between 0 and 1"


@dataclass(frozen=True)
class Settings:
    """Everything `baselined serve` can be told. See ``docs/configuration.md``."""

    listen: str = field(
        default="127.0.0.1:50051", metadata={"help": "gRPC address: host:port or unix:/path"}
    )
    store: str = field(
        default="sqlite:///baselined.db",
        metadata={
            "help": "store URL: sqlite:///relative.db, sqlite:////abs.db, :memory:, redis://host:port/db,"
            " redis+cluster://host:port (Redis Cluster)"
        },
    )
    instance: str = field(
        default_factory=default_instance, metadata={"help": "this sidecar's writer id"}
    )
    # -- fleet mode (docs/storage.md, "Fleet mode") --
    fleet_mode: str = field(
        default="auto",
        metadata={
            "help": "many sidecars on one store, one leader per (model, environment) runs the"
            " comparisons and raises alerts: on, off, or auto (on for Redis stores)"
        },
    )
    lease_ttl: float = field(
        default=10.0,
        metadata={
            "help": "seconds a fleet leader's lease lasts without renewal (renewed every"
            " third of it); a dead leader is replaced within 4/3 of it",
            "check": _positive,
        },
    )
    instance_slice: bool = field(
        default=False,
        metadata={
            "help": "add the slice attribute instance=<instance> to every row this sidecar"
            " ingests, for per-instance views of fleet data"
        },
    )
    bucket_seconds: int = field(
        default=60, metadata={"help": "width of a window bucket", "check": _positive}
    )
    flush_interval: float = field(
        default=5.0,
        metadata={
            "help": "seconds between flushes of live windows to the store",
            "check": _positive,
        },
    )
    retention_seconds: int = field(
        default=7 * 24 * 3600, metadata={"help": "how long window data is kept", "check": _positive}
    )
    event_retention_seconds: int = field(
        default=90 * 24 * 3600,
        metadata={
            "help": "how long change events are kept (by event time); older events are refused",
            "check": _positive,
        },
    )
    # -- impact reports (issue 4; docs/events.md#impact-reports) --
    impact_checks: bool = field(
        default=True,
        metadata={"help": "start a before/after impact check for every change event"},
    )
    impact_min_samples: int = field(
        default=20_000,
        metadata={
            "help": "samples needed on each side (before and after the event) before an"
            " impact verdict is given",
            "check": _positive,
        },
    )
    impact_min_wait: float = field(
        default=60.0,
        metadata={
            "help": "seconds after the event before an impact verdict may be given",
            "check": _non_negative,
        },
    )
    impact_max_wait: float = field(
        default=86400.0,
        metadata={
            "help": "seconds after the event at which an undecided impact check ends as"
            " inconclusive (the after side is at most this long)",
            "check": _positive,
        },
    )
    impact_lookback: float = field(
        default=86400.0,
        metadata={
            "help": "seconds of traffic before the event that form the impact check's before side",
            "check": _positive,
        },
    )
    impact_margin: float = field(
        default=3.5,
        metadata={
            "help": "no measurable change needs every tested effect's interval inside"
            " this multiple of its minor guardrail (1 = the guardrail itself)",
            "check": _positive,
        },
    )
    impact_alert_seconds: float = field(
        default=3600.0,
        metadata={
            "help": "how long the alert of a regression verdict stays firing",
            "check": _positive,
        },
    )
    suspect_lookback_seconds: float = field(
        default=24 * 3600.0,
        metadata={
            "help": "how long before an alert's change point change events are ranked as suspects",
            "check": _positive,
        },
    )
    compression: int = field(
        default=1000,
        metadata={"help": "t-digest size (max centroids) per series", "check": _positive},
    )
    exact_limit: int = field(
        default=65536,
        metadata={
            "help": "numeric series keep their values exactly up to this many per bucket"
            " and baseline; 0 = always t-digest",
            "check": _non_negative,
        },
    )
    categorical_capacity: int = field(
        default=256,
        metadata={
            "help": "distinct values kept exactly per categorical series",
            "check": _positive,
        },
    )
    max_batch_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata={"help": "largest accepted batch message", "check": _positive},
    )
    max_batch_rows: int = field(
        default=65536, metadata={"help": "most rows in one batch", "check": _positive}
    )
    max_signals: int = field(
        default=256, metadata={"help": "most signals in one batch", "check": _positive}
    )
    max_slice_attributes: int = field(
        default=16, metadata={"help": "most slice attributes in one batch", "check": _non_negative}
    )
    max_slice_values: int = field(
        default=64,
        metadata={
            "help": "distinct values per slice attribute per (model, environment); more fold into __other__",
            "check": _non_negative,
        },
    )
    max_series: int = field(
        default=20000,
        metadata={
            "help": "series in memory per (model, environment); values of further series"
            " are refused and counted (values_refused), not stored",
            "check": _positive,
        },
    )
    max_clock_skew: float = field(
        default=300.0,
        metadata={"help": "how far in the future a timestamp may be", "check": _non_negative},
    )
    outcome_horizon_seconds: int = field(
        default=7 * 24 * 3600,
        metadata={
            "help": "how long sampled predictions with a request id are kept for joining"
            " outcomes (labels); later outcomes count as expired",
            "check": _positive,
        },
    )
    max_pending_predictions: int = field(
        default=100_000,
        metadata={
            "help": "predictions held in memory between flushes to the store; more are"
            " dropped and counted",
            "check": _positive,
        },
    )
    max_kept_predictions: int = field(
        default=1_000_000,
        metadata={
            "help": "predictions kept in the store per model; the oldest are evicted"
            " (counted) past it",
            "check": _positive,
        },
    )
    reflection: bool = field(default=True, metadata={"help": "serve gRPC server reflection"})
    shutdown_grace: float = field(
        default=10.0,
        metadata={"help": "seconds to finish in-flight calls on SIGTERM", "check": _non_negative},
    )
    # -- degraded mode (docs/storage.md#degraded-mode) --
    max_buffered_buckets: int = field(
        default=60,
        metadata={
            "help": "window buckets kept in memory per (model, environment) while the store is"
            " unreachable; past it the oldest is dropped and its rows counted",
            "check": _positive,
        },
    )
    store_retry_max: float = field(
        default=10.0,
        metadata={
            "help": "longest wait, in seconds, between flush retries while the store is"
            " unreachable (exponential backoff from flush_interval, with jitter)",
            "check": _positive,
        },
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    guardrails: str = field(
        default="",
        metadata={
            "help": "guardrails TOML file (tiers per signal kind, per model and signal;"
            " docs/statistics.md); empty = the built-in defaults"
        },
    )
    alpha: float = field(
        default=0.0,
        metadata={
            "help": "false-alarm budget per (model, environment) per monitoring epoch;"
            " 0 = the guardrails file's alpha, else 0.01",
            "check": _alpha,
        },
    )
    check_interval: float = field(
        default=0.0,
        metadata={
            "help": "seconds between comparisons; 0 = the guardrails file's check_interval,"
            " else 10",
            "check": _non_negative,
        },
    )
    alertmanager_url: str = field(
        default="",
        metadata={
            "help": "Prometheus Alertmanager base URL (http://alertmanager:9093) to POST alerts to;"
            " empty = off"
        },
    )
    webhook_url: str = field(
        default="",
        metadata={
            "help": "URL to POST every alert change to (Alertmanager v4 webhook payload);"
            " empty = off"
        },
    )
    alert_resend_interval: float = field(
        default=60.0,
        metadata={
            "help": "seconds between re-sends of firing alerts to Alertmanager",
            "check": _positive,
        },
    )
    otel_logs: bool = field(
        default=False,
        metadata={
            "help": "emit an OpenTelemetry log record (event baselined.alert) per alert change,"
            " via the configured logger provider or OTLP (OTEL_EXPORTER_OTLP_* variables)"
        },
    )
    health_listen: str = field(
        default="",
        metadata={
            "help": "extra TCP address (host:port) serving only grpc.health.v1, for kubelet grpc"
            " probes when --listen is a Unix socket; empty = off"
        },
    )
    http_listen: str = field(
        default="",
        metadata={
            "help": "HTTP address (host:port, e.g. 127.0.0.1:9464) for /v1/kserve, /healthz and"
            " /metrics; empty = off"
        },
    )
    kserve_sample_rate: float = field(
        default=1.0,
        metadata={
            "help": "share of KServe inference-logger events ingested, decided by ce-id",
            "check": _ratio,
        },
    )
    kserve_environment: str = field(
        default="",
        metadata={
            "help": "environment of KServe traffic; empty = the event's namespace (ce-namespace)"
        },
    )
    kserve_allow_unauthenticated: bool = field(
        default=False,
        metadata={
            "help": "with authentication on, accept POST /v1/kserve without credentials (KServe's"
            " logger cannot send a token); prefer an http_listen on loopback in the pod"
        },
    )

    otel_exporter: str = field(
        default="none",
        metadata={
            "help": "export the sidecar's own traces, metrics and logs: otlp (gRPC, configured"
            " by the OTEL_EXPORTER_OTLP_* variables), console (the demo) or none"
        },
    )
    deployment_environment: str = field(
        default="",
        metadata={
            "help": "the deployment.environment.name resource attribute of the sidecar's"
            " telemetry; empty = from OTEL_RESOURCE_ATTRIBUTES, if set there"
        },
    )
    otel_ingest_span_ratio: float = field(
        default=0.01,
        metadata={
            "help": "share of ingest batches that get a span (0 to 1)",
            "check": _ratio,
        },
    )
    otel_top_series: int = field(
        default=20,
        metadata={
            "help": "series whose effect and bound are exported as gauges per (model,"
            " environment): the closest to their guardrail",
            "check": _non_negative,
        },
    )
    prometheus_metrics: bool = field(
        default=False,
        metadata={"help": "serve the sidecar's metrics in Prometheus text format on /metrics"},
    )
    # -- identity and transport security (docs/security.md) --
    auth_tokens_file: str = field(
        default="",
        metadata={
            "help": "principals file (TOML [[principal]] or JSON lines: name, roles, token_sha256"
            " or cert_subject, expires_at); re-read when it changes; empty = none"
        },
    )
    auth_tokens: str = field(
        default="",
        metadata={
            "help": "principals inline as JSON (same fields as the file), usually from"
            " BASELINED_AUTH_TOKENS; empty = none"
        },
    )
    auth_reload_interval: float = field(
        default=2.0,
        metadata={
            "help": "seconds between checks of auth_tokens_file for changes; 0 = every call",
            "check": _non_negative,
        },
    )
    allow_open: bool = field(
        default=False,
        metadata={
            "help": "serve without authentication on a non-loopback address (--insecure-open);"
            " without auth the sidecar otherwise only serves on loopback or a Unix socket"
        },
    )
    tls_cert: str = field(
        default="",
        metadata={
            "help": "PEM certificate chain for TLS on the gRPC and HTTP listeners (reloaded"
            " when the file changes); empty = plaintext"
        },
    )
    tls_key: str = field(default="", metadata={"help": "PEM private key of tls_cert"})
    tls_client_ca: str = field(
        default="",
        metadata={
            "help": "PEM CA bundle that client certificates must chain to; set = mTLS"
            " (clients without a certificate from it cannot connect)"
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            check: Callable[[Any], str | None] | None = f.metadata.get("check")
            if check is not None:
                problem = check(getattr(self, f.name))
                if problem:
                    raise ConfigError(
                        f"setting {f.name!r} {problem}, got {getattr(self, f.name)!r}"
                    )
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"setting 'log_level' must be debug, info, warning or error, got {self.log_level!r}"
            )
        if self.otel_exporter not in ("otlp", "console", "none"):
            raise ConfigError(
                f"setting 'otel_exporter' must be otlp, console or none, got {self.otel_exporter!r}"
            )
        if not self.listen:
            raise ConfigError("setting 'listen' must not be empty")
        if not self.instance:
            raise ConfigError("setting 'instance' must not be empty")
        if self.fleet_mode not in ("auto", "on", "off"):
            raise ConfigError(
                f"setting 'fleet_mode' must be auto, on or off, got {self.fleet_mode!r}"
            )
        if self.impact_min_wait > self.impact_max_wait:
            raise ConfigError(
                f"setting 'impact_min_wait' ({self.impact_min_wait:g} s) must not exceed"
                f" 'impact_max_wait' ({self.impact_max_wait:g} s)"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("settings 'tls_cert' and 'tls_key' must be given together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("setting 'tls_client_ca' (mTLS) needs 'tls_cert' and 'tls_key'")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def resolve(
        cls,
        args: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
    ) -> Settings:
        """Build settings from arguments > environment > config file > defaults.

        ``args`` values of None count as not given. Unknown keys in ``args`` or
        the config file raise ConfigError naming them.
        """
        env = os.environ if env is None else env
        args = {k: v for k, v in (args or {}).items() if v is not None}
        known = {f.name: f for f in fields(cls)}
        for key in args:
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}")
        path = config_file if config_file is not None else env.get(_ENV_PREFIX + "CONFIG")
        from_file = _read_config(Path(path)) if path else {}
        for key in from_file:
            if key not in known:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values: dict[str, Any] = {}
        for name, f in known.items():
            env_name = _ENV_PREFIX + name.upper()
            if name in args:
                raw, origin = args[name], f"--{name.replace('_', '-')}"
            elif env_name in env:
                raw, origin = env[env_name], env_name
            elif name in from_file:
                raw, origin = from_file[name], f"config file {path}"
            else:
                continue
            values[name] = _coerce(f, raw, origin)
        try:
            return cls(**values)
        except ConfigError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from err

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    section = data.get("sidecar", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [sidecar] must be a table")
    return {k.replace("-", "_"): v for k, v in section.items()}


def _coerce(f: dataclasses.Field[Any], raw: Any, origin: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected a whole number")
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"setting {f.name!r} from {origin}: {err} (got {raw!r})") from err
