from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignalKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNAL_KIND_UNSPECIFIED: _ClassVar[SignalKind]
    SIGNAL_KIND_FEATURE: _ClassVar[SignalKind]
    SIGNAL_KIND_OUTPUT: _ClassVar[SignalKind]
    SIGNAL_KIND_LATENCY: _ClassVar[SignalKind]
    SIGNAL_KIND_RESOURCE: _ClassVar[SignalKind]
    SIGNAL_KIND_ERROR: _ClassVar[SignalKind]
    SIGNAL_KIND_QUALITY: _ClassVar[SignalKind]

class BaselineStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASELINE_STATUS_UNSPECIFIED: _ClassVar[BaselineStatus]
    BASELINE_STATUS_CANDIDATE: _ClassVar[BaselineStatus]
    BASELINE_STATUS_ACTIVE: _ClassVar[BaselineStatus]
    BASELINE_STATUS_RETIRED: _ClassVar[BaselineStatus]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_MINOR: _ClassVar[Severity]
    SEVERITY_MODERATE: _ClassVar[Severity]
    SEVERITY_SEVERE: _ClassVar[Severity]

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_FIRING: _ClassVar[AlertState]
    ALERT_STATE_RESOLVED: _ClassVar[AlertState]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_DEPLOY: _ClassVar[EventType]
    EVENT_TYPE_MODEL_ROLLOUT: _ClassVar[EventType]
    EVENT_TYPE_LIBRARY_UPDATE: _ClassVar[EventType]
    EVENT_TYPE_CONFIG_CHANGE: _ClassVar[EventType]
    EVENT_TYPE_NODE_CHANGE: _ClassVar[EventType]
    EVENT_TYPE_ACCELERATOR_CHANGE: _ClassVar[EventType]
    EVENT_TYPE_DATA_SOURCE_CHANGE: _ClassVar[EventType]
    EVENT_TYPE_AUTOSCALE: _ClassVar[EventType]
    EVENT_TYPE_IMAGE_CHANGE: _ClassVar[EventType]
    EVENT_TYPE_PYTHON_CHANGE: _ClassVar[EventType]
    EVENT_TYPE_CUSTOM: _ClassVar[EventType]

class ImpactVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPACT_VERDICT_UNSPECIFIED: _ClassVar[ImpactVerdict]
    IMPACT_VERDICT_PENDING: _ClassVar[ImpactVerdict]
    IMPACT_VERDICT_NO_CHANGE: _ClassVar[ImpactVerdict]
    IMPACT_VERDICT_REGRESSION: _ClassVar[ImpactVerdict]
    IMPACT_VERDICT_INCONCLUSIVE: _ClassVar[ImpactVerdict]
SIGNAL_KIND_UNSPECIFIED: SignalKind
SIGNAL_KIND_FEATURE: SignalKind
SIGNAL_KIND_OUTPUT: SignalKind
SIGNAL_KIND_LATENCY: SignalKind
SIGNAL_KIND_RESOURCE: SignalKind
SIGNAL_KIND_ERROR: SignalKind
SIGNAL_KIND_QUALITY: SignalKind
BASELINE_STATUS_UNSPECIFIED: BaselineStatus
BASELINE_STATUS_CANDIDATE: BaselineStatus
BASELINE_STATUS_ACTIVE: BaselineStatus
BASELINE_STATUS_RETIRED: BaselineStatus
SEVERITY_UNSPECIFIED: Severity
SEVERITY_MINOR: Severity
SEVERITY_MODERATE: Severity
SEVERITY_SEVERE: Severity
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_FIRING: AlertState
ALERT_STATE_RESOLVED: AlertState
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_DEPLOY: EventType
EVENT_TYPE_MODEL_ROLLOUT: EventType
EVENT_TYPE_LIBRARY_UPDATE: EventType
EVENT_TYPE_CONFIG_CHANGE: EventType
EVENT_TYPE_NODE_CHANGE: EventType
EVENT_TYPE_ACCELERATOR_CHANGE: EventType
EVENT_TYPE_DATA_SOURCE_CHANGE: EventType
EVENT_TYPE_AUTOSCALE: EventType
EVENT_TYPE_IMAGE_CHANGE: EventType
EVENT_TYPE_PYTHON_CHANGE: EventType
EVENT_TYPE_CUSTOM: EventType
IMPACT_VERDICT_UNSPECIFIED: ImpactVerdict
IMPACT_VERDICT_PENDING: ImpactVerdict
IMPACT_VERDICT_NO_CHANGE: ImpactVerdict
IMPACT_VERDICT_REGRESSION: ImpactVerdict
IMPACT_VERDICT_INCONCLUSIVE: ImpactVerdict

class Fingerprint(_message.Message):
    __slots__ = ("hash", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HASH_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    hash: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, hash: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NumericColumn(_message.Message):
    __slots__ = ("name", "kind", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: SignalKind
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[SignalKind, str]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class CategoricalColumn(_message.Message):
    __slots__ = ("name", "kind", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: SignalKind
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[SignalKind, str]] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class SliceColumn(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class SampleBatch(_message.Message):
    __slots__ = ("model", "version", "environment", "fingerprint", "instance", "request_ids", "timestamps", "numeric", "categorical", "slices", "batch_slices", "traceparents", "dropped")
    class BatchSlicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SLICES_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    environment: str
    fingerprint: Fingerprint
    instance: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    timestamps: _containers.RepeatedScalarFieldContainer[float]
    numeric: _containers.RepeatedCompositeFieldContainer[NumericColumn]
    categorical: _containers.RepeatedCompositeFieldContainer[CategoricalColumn]
    slices: _containers.RepeatedCompositeFieldContainer[SliceColumn]
    batch_slices: _containers.ScalarMap[str, str]
    traceparents: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.ScalarMap[str, int]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., environment: _Optional[str] = ..., fingerprint: _Optional[_Union[Fingerprint, _Mapping]] = ..., instance: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ..., timestamps: _Optional[_Iterable[float]] = ..., numeric: _Optional[_Iterable[_Union[NumericColumn, _Mapping]]] = ..., categorical: _Optional[_Iterable[_Union[CategoricalColumn, _Mapping]]] = ..., slices: _Optional[_Iterable[_Union[SliceColumn, _Mapping]]] = ..., batch_slices: _Optional[_Mapping[str, str]] = ..., traceparents: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Mapping[str, int]] = ...) -> None: ...

class BatchRejection(_message.Message):
    __slots__ = ("batch_index", "code", "message", "records")
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    batch_index: int
    code: int
    message: str
    records: int
    def __init__(self, batch_index: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., records: _Optional[int] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("batches_accepted", "batches_rejected", "records_accepted", "records_rejected", "rejections")
    BATCHES_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_REJECTED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    batches_accepted: int
    batches_rejected: int
    records_accepted: int
    records_rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[BatchRejection]
    def __init__(self, batches_accepted: _Optional[int] = ..., batches_rejected: _Optional[int] = ..., records_accepted: _Optional[int] = ..., records_rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[BatchRejection, _Mapping]]] = ...) -> None: ...

class Baseline(_message.Message):
    __slots__ = ("id", "model", "environment", "name", "reason", "created_by", "created_at", "window_start", "window_end", "status", "versions", "parent_id", "fingerprint", "series_count", "record_count", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SERIES_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    environment: str
    name: str
    reason: str
    created_by: str
    created_at: float
    window_start: float
    window_end: float
    status: BaselineStatus
    versions: _containers.RepeatedScalarFieldContainer[str]
    parent_id: str
    fingerprint: Fingerprint
    series_count: int
    record_count: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., environment: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[float] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., status: _Optional[_Union[BaselineStatus, str]] = ..., versions: _Optional[_Iterable[str]] = ..., parent_id: _Optional[str] = ..., fingerprint: _Optional[_Union[Fingerprint, _Mapping]] = ..., series_count: _Optional[int] = ..., record_count: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class QuantileValue(_message.Message):
    __slots__ = ("q", "value")
    Q_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    q: float
    value: float
    def __init__(self, q: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...

class CategoryCount(_message.Message):
    __slots__ = ("value", "count")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    value: str
    count: int
    def __init__(self, value: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class SeriesSummary(_message.Message):
    __slots__ = ("version", "slice", "signal", "kind", "categorical", "count", "missing", "out_of_range", "missing_rate", "min", "max", "mean", "quantiles", "top_values", "other_count", "distinct")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_FIELD_NUMBER: _ClassVar[int]
    MISSING_RATE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    OTHER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    version: str
    slice: str
    signal: str
    kind: SignalKind
    categorical: bool
    count: int
    missing: int
    out_of_range: int
    missing_rate: float
    min: float
    max: float
    mean: float
    quantiles: _containers.RepeatedCompositeFieldContainer[QuantileValue]
    top_values: _containers.RepeatedCompositeFieldContainer[CategoryCount]
    other_count: int
    distinct: int
    def __init__(self, version: _Optional[str] = ..., slice: _Optional[str] = ..., signal: _Optional[str] = ..., kind: _Optional[_Union[SignalKind, str]] = ..., categorical: _Optional[bool] = ..., count: _Optional[int] = ..., missing: _Optional[int] = ..., out_of_range: _Optional[int] = ..., missing_rate: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., quantiles: _Optional[_Iterable[_Union[QuantileValue, _Mapping]]] = ..., top_values: _Optional[_Iterable[_Union[CategoryCount, _Mapping]]] = ..., other_count: _Optional[int] = ..., distinct: _Optional[int] = ...) -> None: ...

class FreezeBaselineRequest(_message.Message):
    __slots__ = ("model", "environment", "name", "reason", "actor", "start", "end", "versions", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    name: str
    reason: str
    actor: str
    start: float
    end: float
    versions: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., versions: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetBaselineRequest(_message.Message):
    __slots__ = ("id", "quantiles", "top_k")
    ID_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    id: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    top_k: int
    def __init__(self, id: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., top_k: _Optional[int] = ...) -> None: ...

class BaselineView(_message.Message):
    __slots__ = ("baseline", "series")
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    baseline: Baseline
    series: _containers.RepeatedCompositeFieldContainer[SeriesSummary]
    def __init__(self, baseline: _Optional[_Union[Baseline, _Mapping]] = ..., series: _Optional[_Iterable[_Union[SeriesSummary, _Mapping]]] = ...) -> None: ...

class ListBaselinesRequest(_message.Message):
    __slots__ = ("model", "environment", "status")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    status: BaselineStatus
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., status: _Optional[_Union[BaselineStatus, str]] = ...) -> None: ...

class ListBaselinesResponse(_message.Message):
    __slots__ = ("baselines",)
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    baselines: _containers.RepeatedCompositeFieldContainer[Baseline]
    def __init__(self, baselines: _Optional[_Iterable[_Union[Baseline, _Mapping]]] = ...) -> None: ...

class PromoteBaselineRequest(_message.Message):
    __slots__ = ("id", "reason", "actor")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    actor: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RollbackBaselineRequest(_message.Message):
    __slots__ = ("model", "environment", "reason", "actor")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    reason: str
    actor: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RetireBaselineRequest(_message.Message):
    __slots__ = ("id", "reason", "actor")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    actor: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class GetActiveBaselineRequest(_message.Message):
    __slots__ = ("model", "environment")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class GetWindowRequest(_message.Message):
    __slots__ = ("model", "environment", "start", "end", "versions", "quantiles", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    start: float
    end: float
    versions: _containers.RepeatedScalarFieldContainer[str]
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    top_k: int
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., versions: _Optional[_Iterable[str]] = ..., quantiles: _Optional[_Iterable[float]] = ..., top_k: _Optional[int] = ...) -> None: ...

class WindowView(_message.Message):
    __slots__ = ("model", "environment", "start", "end", "versions", "instances", "series")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    start: float
    end: float
    versions: _containers.RepeatedScalarFieldContainer[str]
    instances: _containers.RepeatedScalarFieldContainer[str]
    series: _containers.RepeatedCompositeFieldContainer[SeriesSummary]
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., versions: _Optional[_Iterable[str]] = ..., instances: _Optional[_Iterable[str]] = ..., series: _Optional[_Iterable[_Union[SeriesSummary, _Mapping]]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "time", "actor", "action", "model", "environment", "target", "reason", "before", "after", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: float
    actor: str
    action: str
    model: str
    environment: str
    target: str
    reason: str
    before: str
    after: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[float] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., model: _Optional[str] = ..., environment: _Optional[str] = ..., target: _Optional[str] = ..., reason: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("model", "environment", "limit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    limit: int
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class Effect(_message.Message):
    __slots__ = ("name", "estimate", "lower", "upper", "guardrail", "unit", "severity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    estimate: float
    lower: float
    upper: float
    guardrail: float
    unit: str
    severity: Severity
    def __init__(self, name: _Optional[str] = ..., estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., guardrail: _Optional[float] = ..., unit: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ...) -> None: ...

class SeriesFinding(_message.Message):
    __slots__ = ("version", "slice", "signal", "kind", "effects", "severity", "baseline_count", "live_count", "phase")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LIVE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    version: str
    slice: str
    signal: str
    kind: SignalKind
    effects: _containers.RepeatedCompositeFieldContainer[Effect]
    severity: Severity
    baseline_count: int
    live_count: int
    phase: str
    def __init__(self, version: _Optional[str] = ..., slice: _Optional[str] = ..., signal: _Optional[str] = ..., kind: _Optional[_Union[SignalKind, str]] = ..., effects: _Optional[_Iterable[_Union[Effect, _Mapping]]] = ..., severity: _Optional[_Union[Severity, str]] = ..., baseline_count: _Optional[int] = ..., live_count: _Optional[int] = ..., phase: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("fingerprint", "model", "environment", "severity", "state", "started_at", "updated_at", "resolved_at", "baseline_id", "window_start", "window_end", "series", "summary", "playbook_url", "labels", "change_point", "suspects", "fingerprint_diff", "attribution", "attribution_summary", "correlation_error", "attribution_since")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PLAYBOOK_URL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_POINT_FIELD_NUMBER: _ClassVar[int]
    SUSPECTS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_DIFF_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_SINCE_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    model: str
    environment: str
    severity: Severity
    state: AlertState
    started_at: float
    updated_at: float
    resolved_at: float
    baseline_id: str
    window_start: float
    window_end: float
    series: _containers.RepeatedCompositeFieldContainer[SeriesFinding]
    summary: str
    playbook_url: str
    labels: _containers.ScalarMap[str, str]
    change_point: AlertChangePoint
    suspects: _containers.RepeatedCompositeFieldContainer[Suspect]
    fingerprint_diff: _containers.RepeatedCompositeFieldContainer[FingerprintDifference]
    attribution: _containers.RepeatedCompositeFieldContainer[SliceAttribution]
    attribution_summary: str
    correlation_error: str
    attribution_since: float
    def __init__(self, fingerprint: _Optional[str] = ..., model: _Optional[str] = ..., environment: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., state: _Optional[_Union[AlertState, str]] = ..., started_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., resolved_at: _Optional[float] = ..., baseline_id: _Optional[str] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., series: _Optional[_Iterable[_Union[SeriesFinding, _Mapping]]] = ..., summary: _Optional[str] = ..., playbook_url: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., change_point: _Optional[_Union[AlertChangePoint, _Mapping]] = ..., suspects: _Optional[_Iterable[_Union[Suspect, _Mapping]]] = ..., fingerprint_diff: _Optional[_Iterable[_Union[FingerprintDifference, _Mapping]]] = ..., attribution: _Optional[_Iterable[_Union[SliceAttribution, _Mapping]]] = ..., attribution_summary: _Optional[str] = ..., correlation_error: _Optional[str] = ..., attribution_since: _Optional[float] = ...) -> None: ...

class AlertChangePoint(_message.Message):
    __slots__ = ("time", "start", "end", "estimated", "statistic", "score", "before_count", "after_count", "signal", "slice")
    TIME_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_COUNT_FIELD_NUMBER: _ClassVar[int]
    AFTER_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    time: float
    start: float
    end: float
    estimated: bool
    statistic: str
    score: float
    before_count: int
    after_count: int
    signal: str
    slice: str
    def __init__(self, time: _Optional[float] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., estimated: _Optional[bool] = ..., statistic: _Optional[str] = ..., score: _Optional[float] = ..., before_count: _Optional[int] = ..., after_count: _Optional[int] = ..., signal: _Optional[str] = ..., slice: _Optional[str] = ...) -> None: ...

class Suspect(_message.Message):
    __slots__ = ("event_id", "type", "time", "model", "environment", "version", "node", "image", "attributes", "source", "score", "components", "reasons")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    type: str
    time: float
    model: str
    environment: str
    version: str
    node: str
    image: str
    attributes: _containers.ScalarMap[str, str]
    source: str
    score: float
    components: _containers.ScalarMap[str, float]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[str] = ..., time: _Optional[float] = ..., model: _Optional[str] = ..., environment: _Optional[str] = ..., version: _Optional[str] = ..., node: _Optional[str] = ..., image: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., score: _Optional[float] = ..., components: _Optional[_Mapping[str, float]] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class FingerprintDifference(_message.Message):
    __slots__ = ("field", "from_value", "to_value", "time", "share", "node", "event_id", "nodes", "nodes_total")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FROM_VALUE_FIELD_NUMBER: _ClassVar[int]
    TO_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    field: str
    from_value: str
    to_value: str
    time: float
    share: float
    node: str
    event_id: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    nodes_total: int
    def __init__(self, field: _Optional[str] = ..., from_value: _Optional[str] = ..., to_value: _Optional[str] = ..., time: _Optional[float] = ..., share: _Optional[float] = ..., node: _Optional[str] = ..., event_id: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., nodes_total: _Optional[int] = ...) -> None: ...

class SliceAttribution(_message.Message):
    __slots__ = ("attribute", "value", "verdict", "effect", "estimate", "lower", "upper", "unit", "guardrail", "tier", "live_count")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    LIVE_COUNT_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    value: str
    verdict: str
    effect: str
    estimate: float
    lower: float
    upper: float
    unit: str
    guardrail: float
    tier: str
    live_count: int
    def __init__(self, attribute: _Optional[str] = ..., value: _Optional[str] = ..., verdict: _Optional[str] = ..., effect: _Optional[str] = ..., estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., unit: _Optional[str] = ..., guardrail: _Optional[float] = ..., tier: _Optional[str] = ..., live_count: _Optional[int] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("model", "environment", "include_resolved")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    include_resolved: bool
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., include_resolved: _Optional[bool] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ("model", "environment", "include_firing")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIRING_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    include_firing: bool
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., include_firing: _Optional[bool] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("model", "environment")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("model", "environment", "baseline_id", "window_start", "window_end", "alpha_per_test", "duration_seconds", "findings")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    ALPHA_PER_TEST_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    baseline_id: str
    window_start: float
    window_end: float
    alpha_per_test: float
    duration_seconds: float
    findings: _containers.RepeatedCompositeFieldContainer[SeriesFinding]
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., baseline_id: _Optional[str] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., alpha_per_test: _Optional[float] = ..., duration_seconds: _Optional[float] = ..., findings: _Optional[_Iterable[_Union[SeriesFinding, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "type", "custom_type", "time", "model", "version", "environment", "node", "image", "attributes", "recorded_by", "source", "recorded_at")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RECORDED_BY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: EventType
    custom_type: str
    time: float
    model: str
    version: str
    environment: str
    node: str
    image: str
    attributes: _containers.ScalarMap[str, str]
    recorded_by: str
    source: str
    recorded_at: float
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., custom_type: _Optional[str] = ..., time: _Optional[float] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., environment: _Optional[str] = ..., node: _Optional[str] = ..., image: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., recorded_by: _Optional[str] = ..., source: _Optional[str] = ..., recorded_at: _Optional[float] = ...) -> None: ...

class RecordEventRequest(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("model", "environment", "start", "end", "types", "limit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    start: float
    end: float
    types: _containers.RepeatedScalarFieldContainer[EventType]
    limit: int
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class ImpactEffect(_message.Message):
    __slots__ = ("signal", "kind", "slice", "effect", "estimate", "lower", "upper", "unit", "direction", "guardrail", "margin", "severity", "within", "samples_before", "samples_after")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    WITHIN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_AFTER_FIELD_NUMBER: _ClassVar[int]
    signal: str
    kind: SignalKind
    slice: str
    effect: str
    estimate: float
    lower: float
    upper: float
    unit: str
    direction: str
    guardrail: float
    margin: float
    severity: Severity
    within: bool
    samples_before: int
    samples_after: int
    def __init__(self, signal: _Optional[str] = ..., kind: _Optional[_Union[SignalKind, str]] = ..., slice: _Optional[str] = ..., effect: _Optional[str] = ..., estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., unit: _Optional[str] = ..., direction: _Optional[str] = ..., guardrail: _Optional[float] = ..., margin: _Optional[float] = ..., severity: _Optional[_Union[Severity, str]] = ..., within: _Optional[bool] = ..., samples_before: _Optional[int] = ..., samples_after: _Optional[int] = ...) -> None: ...

class ImpactReport(_message.Message):
    __slots__ = ("id", "model", "environment", "event", "verdict", "effects", "scope", "scope_note", "samples_before", "samples_after", "samples_needed", "before_start", "before_end", "after_start", "after_end", "alpha_per_test", "margin", "summary", "created_at", "updated_at", "decided_at", "alert_fingerprint")
    class ScopeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_NOTE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_AFTER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_NEEDED_FIELD_NUMBER: _ClassVar[int]
    BEFORE_START_FIELD_NUMBER: _ClassVar[int]
    BEFORE_END_FIELD_NUMBER: _ClassVar[int]
    AFTER_START_FIELD_NUMBER: _ClassVar[int]
    AFTER_END_FIELD_NUMBER: _ClassVar[int]
    ALPHA_PER_TEST_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    ALERT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    environment: str
    event: Event
    verdict: ImpactVerdict
    effects: _containers.RepeatedCompositeFieldContainer[ImpactEffect]
    scope: _containers.ScalarMap[str, str]
    scope_note: str
    samples_before: int
    samples_after: int
    samples_needed: int
    before_start: float
    before_end: float
    after_start: float
    after_end: float
    alpha_per_test: float
    margin: float
    summary: str
    created_at: float
    updated_at: float
    decided_at: float
    alert_fingerprint: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., environment: _Optional[str] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., verdict: _Optional[_Union[ImpactVerdict, str]] = ..., effects: _Optional[_Iterable[_Union[ImpactEffect, _Mapping]]] = ..., scope: _Optional[_Mapping[str, str]] = ..., scope_note: _Optional[str] = ..., samples_before: _Optional[int] = ..., samples_after: _Optional[int] = ..., samples_needed: _Optional[int] = ..., before_start: _Optional[float] = ..., before_end: _Optional[float] = ..., after_start: _Optional[float] = ..., after_end: _Optional[float] = ..., alpha_per_test: _Optional[float] = ..., margin: _Optional[float] = ..., summary: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., decided_at: _Optional[float] = ..., alert_fingerprint: _Optional[str] = ...) -> None: ...

class GetImpactReportRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListImpactReportsRequest(_message.Message):
    __slots__ = ("model", "environment", "start", "end", "verdicts", "limit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    start: float
    end: float
    verdicts: _containers.RepeatedScalarFieldContainer[ImpactVerdict]
    limit: int
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., verdicts: _Optional[_Iterable[_Union[ImpactVerdict, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListImpactReportsResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ImpactReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[ImpactReport, _Mapping]]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("model", "environment", "four_eyes", "owners")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    FOUR_EYES_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    four_eyes: bool
    owners: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., four_eyes: _Optional[bool] = ..., owners: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("model", "environment")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("policy", "reason", "actor")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    reason: str
    actor: str
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class PendingApproval(_message.Message):
    __slots__ = ("baseline_id", "model", "environment", "requested_by", "requested_at", "reason")
    BASELINE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    baseline_id: str
    model: str
    environment: str
    requested_by: str
    requested_at: float
    reason: str
    def __init__(self, baseline_id: _Optional[str] = ..., model: _Optional[str] = ..., environment: _Optional[str] = ..., requested_by: _Optional[str] = ..., requested_at: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("model", "environment")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class ListPendingResponse(_message.Message):
    __slots__ = ("pending",)
    PENDING_FIELD_NUMBER: _ClassVar[int]
    pending: _containers.RepeatedCompositeFieldContainer[PendingApproval]
    def __init__(self, pending: _Optional[_Iterable[_Union[PendingApproval, _Mapping]]] = ...) -> None: ...

class ApproveBaselineRequest(_message.Message):
    __slots__ = ("id", "reason", "actor")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    actor: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ("model", "environment")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("ok", "checked", "problem", "bad_seq", "bad_model")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    BAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    BAD_MODEL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    checked: int
    problem: str
    bad_seq: int
    bad_model: str
    def __init__(self, ok: _Optional[bool] = ..., checked: _Optional[int] = ..., problem: _Optional[str] = ..., bad_seq: _Optional[int] = ..., bad_model: _Optional[str] = ...) -> None: ...

class ExportBaselineRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class BaselineFile(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    def __init__(self, content: _Optional[bytes] = ...) -> None: ...

class ImportBaselineRequest(_message.Message):
    __slots__ = ("content", "environment", "name", "reason", "actor")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    environment: str
    name: str
    reason: str
    actor: str
    def __init__(self, content: _Optional[bytes] = ..., environment: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class DiffBaselinesRequest(_message.Message):
    __slots__ = ("a", "b", "quantiles")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ...) -> None: ...

class DiffBaselinesResponse(_message.Message):
    __slots__ = ("a", "b", "findings", "only_in_a", "only_in_b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ONLY_IN_A_FIELD_NUMBER: _ClassVar[int]
    ONLY_IN_B_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    findings: _containers.RepeatedCompositeFieldContainer[SeriesFinding]
    only_in_a: _containers.RepeatedScalarFieldContainer[str]
    only_in_b: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[SeriesFinding, _Mapping]]] = ..., only_in_a: _Optional[_Iterable[str]] = ..., only_in_b: _Optional[_Iterable[str]] = ...) -> None: ...

class OutcomeRecord(_message.Message):
    __slots__ = ("model", "request_id", "class_index", "value", "class_name", "time", "weight")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    class_index: int
    value: float
    class_name: str
    time: float
    weight: float
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., class_index: _Optional[int] = ..., value: _Optional[float] = ..., class_name: _Optional[str] = ..., time: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class OutcomeBatch(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[OutcomeRecord]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[OutcomeRecord, _Mapping]]] = ...) -> None: ...

class OutcomeReason(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RecordOutcomesResponse(_message.Message):
    __slots__ = ("joined", "unknown", "expired", "duplicate", "invalid", "reasons")
    JOINED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    joined: int
    unknown: int
    expired: int
    duplicate: int
    invalid: int
    reasons: _containers.RepeatedCompositeFieldContainer[OutcomeReason]
    def __init__(self, joined: _Optional[int] = ..., unknown: _Optional[int] = ..., expired: _Optional[int] = ..., duplicate: _Optional[int] = ..., invalid: _Optional[int] = ..., reasons: _Optional[_Iterable[_Union[OutcomeReason, _Mapping]]] = ...) -> None: ...

class GetQualityRequest(_message.Message):
    __slots__ = ("model", "environment")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class QualityReliabilityBin(_message.Message):
    __slots__ = ("lo", "hi", "count", "mean_confidence", "accuracy")
    LO_FIELD_NUMBER: _ClassVar[int]
    HI_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    lo: float
    hi: float
    count: float
    mean_confidence: float
    accuracy: float
    def __init__(self, lo: _Optional[float] = ..., hi: _Optional[float] = ..., count: _Optional[float] = ..., mean_confidence: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class QualityEstimate(_message.Message):
    __slots__ = ("expected_error", "lower", "upper", "count", "has_realized", "realized_error", "diverged")
    EXPECTED_ERROR_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    HAS_REALIZED_FIELD_NUMBER: _ClassVar[int]
    REALIZED_ERROR_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_FIELD_NUMBER: _ClassVar[int]
    expected_error: float
    lower: float
    upper: float
    count: float
    has_realized: bool
    realized_error: float
    diverged: bool
    def __init__(self, expected_error: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., count: _Optional[float] = ..., has_realized: _Optional[bool] = ..., realized_error: _Optional[float] = ..., diverged: _Optional[bool] = ...) -> None: ...

class QualitySlice(_message.Message):
    __slots__ = ("slice", "count", "error_rate", "ece", "ece_adaptive", "brier", "log_loss", "auc", "baseline_count", "baseline_error_rate", "baseline_ece", "effects", "cbpe", "cbpe_check", "reliability", "reliability_adaptive")
    SLICE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    ECE_ADAPTIVE_FIELD_NUMBER: _ClassVar[int]
    BRIER_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ECE_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    CBPE_FIELD_NUMBER: _ClassVar[int]
    CBPE_CHECK_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_ADAPTIVE_FIELD_NUMBER: _ClassVar[int]
    slice: str
    count: float
    error_rate: float
    ece: float
    ece_adaptive: float
    brier: float
    log_loss: float
    auc: float
    baseline_count: float
    baseline_error_rate: float
    baseline_ece: float
    effects: _containers.RepeatedCompositeFieldContainer[Effect]
    cbpe: QualityEstimate
    cbpe_check: QualityEstimate
    reliability: _containers.RepeatedCompositeFieldContainer[QualityReliabilityBin]
    reliability_adaptive: _containers.RepeatedCompositeFieldContainer[QualityReliabilityBin]
    def __init__(self, slice: _Optional[str] = ..., count: _Optional[float] = ..., error_rate: _Optional[float] = ..., ece: _Optional[float] = ..., ece_adaptive: _Optional[float] = ..., brier: _Optional[float] = ..., log_loss: _Optional[float] = ..., auc: _Optional[float] = ..., baseline_count: _Optional[float] = ..., baseline_error_rate: _Optional[float] = ..., baseline_ece: _Optional[float] = ..., effects: _Optional[_Iterable[_Union[Effect, _Mapping]]] = ..., cbpe: _Optional[_Union[QualityEstimate, _Mapping]] = ..., cbpe_check: _Optional[_Union[QualityEstimate, _Mapping]] = ..., reliability: _Optional[_Iterable[_Union[QualityReliabilityBin, _Mapping]]] = ..., reliability_adaptive: _Optional[_Iterable[_Union[QualityReliabilityBin, _Mapping]]] = ...) -> None: ...

class FairnessGapView(_message.Message):
    __slots__ = ("attribute", "metric", "best", "worst", "estimate", "lower", "upper", "baseline_estimate", "baseline_lower", "baseline_upper", "shift")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    WORST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_LOWER_FIELD_NUMBER: _ClassVar[int]
    BASELINE_UPPER_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    metric: str
    best: str
    worst: str
    estimate: float
    lower: float
    upper: float
    baseline_estimate: float
    baseline_lower: float
    baseline_upper: float
    shift: Effect
    def __init__(self, attribute: _Optional[str] = ..., metric: _Optional[str] = ..., best: _Optional[str] = ..., worst: _Optional[str] = ..., estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., baseline_estimate: _Optional[float] = ..., baseline_lower: _Optional[float] = ..., baseline_upper: _Optional[float] = ..., shift: _Optional[_Union[Effect, _Mapping]] = ...) -> None: ...

class QualityView(_message.Message):
    __slots__ = ("model", "environment", "baseline_id", "window_start", "window_end", "slices", "fairness")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    FAIRNESS_FIELD_NUMBER: _ClassVar[int]
    model: str
    environment: str
    baseline_id: str
    window_start: float
    window_end: float
    slices: _containers.RepeatedCompositeFieldContainer[QualitySlice]
    fairness: _containers.RepeatedCompositeFieldContainer[FairnessGapView]
    def __init__(self, model: _Optional[str] = ..., environment: _Optional[str] = ..., baseline_id: _Optional[str] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., slices: _Optional[_Iterable[_Union[QualitySlice, _Mapping]]] = ..., fairness: _Optional[_Iterable[_Union[FairnessGapView, _Mapping]]] = ...) -> None: ...
