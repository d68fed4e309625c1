"""baselined middleware: shadow sampled requests of a model server to the sidecar.

Runs inside the model server and needs only grpcio and protobuf.

>>> import middleware
>>> @middleware.shadow(model="ranker", sample_rate=0.1, atexit=False)
... def predict(features):
...     return {"score": 0.5}
>>> predict({"age": 41})
{'score': 0.5}
"""

from __future__ import annotations

from middleware.asgi import BaselinedASGIMiddleware
from middleware.client import Client, ClientError
from middleware.extractors import default_features, default_outputs, from_dict, numpy_rows
from middleware.fingerprint import Fingerprint, compute_fingerprint, process_fingerprint
from middleware.grpc_oip import AioOIPServerInterceptor, OIPServerInterceptor, ShadowPerModel
from middleware.outcomes import OutcomeSender, record_outcome
from middleware.sampling import Sampler, sample_by_id
from middleware.shadow import Shadow, ShadowStats, shadow
from middleware.shipper import Backoff
from middleware.wsgi import BaselinedWSGIMiddleware

__all__ = [
    "AioOIPServerInterceptor",
    "Backoff",
    "BaselinedASGIMiddleware",
    "BaselinedWSGIMiddleware",
    "Client",
    "ClientError",
    "Fingerprint",
    "OIPServerInterceptor",
    "OutcomeSender",
    "Sampler",
    "Shadow",
    "ShadowPerModel",
    "ShadowStats",
    "compute_fingerprint",
    "default_features",
    "default_outputs",
    "from_dict",
    "numpy_rows",
    "process_fingerprint",
    "record_outcome",
    "sample_by_id",
    "shadow",
]
