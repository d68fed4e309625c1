"""Client against a tiny real Baselines server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from middleware import Client, ClientError


class CannedBaselines(pb_grpc.BaselinesServicer):
    """Answers from a dict of canned baselines and records the requests."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.baselines = {
            "b1": pb.Baseline(id="b1", model="ranker", environment="prod", name="w1"),
        }

    def FreezeBaseline(self, request: Any, context: Any) -> pb.Baseline:
        self.requests.append(request)
        if request.name == "w1":
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "baseline 'w1' exists")
        return pb.Baseline(id="b2", model=request.model, name=request.name, reason=request.reason)

    def GetBaseline(self, request: Any, context: Any) -> pb.BaselineView:
        self.requests.append(request)
        if request.id not in self.baselines:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no baseline {request.id}")
        series = pb.SeriesSummary(
            signal="latency_seconds",
            count=10,
            quantiles=[pb.QuantileValue(q=q, value=q * 2) for q in request.quantiles],
        )
        return pb.BaselineView(baseline=self.baselines[request.id], series=[series])

    def ListBaselines(self, request: Any, context: Any) -> pb.ListBaselinesResponse:
        self.requests.append(request)
        return pb.ListBaselinesResponse(baselines=list(self.baselines.values()))

    def PromoteBaseline(self, request: Any, context: Any) -> pb.Baseline:
        self.requests.append(request)
        return pb.Baseline(id=request.id, status=pb.BASELINE_STATUS_ACTIVE)

    def RollbackBaseline(self, request: Any, context: Any) -> pb.Baseline:
        self.requests.append(request)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no previous active baseline")
        raise AssertionError("abort raises")

    def RetireBaseline(self, request: Any, context: Any) -> pb.Baseline:
        self.requests.append(request)
        return pb.Baseline(id=request.id, status=pb.BASELINE_STATUS_RETIRED)

    def GetActiveBaseline(self, request: Any, context: Any) -> pb.Baseline:
        self.requests.append(request)
        return self.baselines["b1"]

    def GetWindow(self, request: Any, context: Any) -> pb.WindowView:
        self.requests.append(request)
        return pb.WindowView(model=request.model, start=request.start, end=request.end)

    def ListAudit(self, request: Any, context: Any) -> pb.ListAuditResponse:
        self.requests.append(request)
        return pb.ListAuditResponse(entries=[pb.AuditEntry(seq=1, action="freeze")])


@pytest.fixture
def baselines() -> Iterator[tuple[CannedBaselines, str]]:
    servicer = CannedBaselines()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_BaselinesServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_calls_send_the_fields_and_return_messages(baselines: tuple[CannedBaselines, str]) -> None:
    servicer, target = baselines
    with Client(target, timeout=5.0) as client:
        frozen = client.freeze(
            "ranker", "prod", name="w2", reason="weekly", actor="ci", start=10.0,
            versions=["v1"], labels={"team": "search"},
        )  # fmt: skip
        assert (frozen.id, frozen.name, frozen.reason) == ("b2", "w2", "weekly")
        req = servicer.requests[-1]
        assert (req.actor, req.start, list(req.versions), dict(req.labels)) == (
            "ci",
            10.0,
            ["v1"],
            {"team": "search"},
        )
        view = client.get("b1", quantiles=[0.5, 0.99], top_k=3)
        assert [q.value for q in view.series[0].quantiles] == [1.0, 1.98]
        assert [b.id for b in client.list("ranker", "prod").baselines] == ["b1"]
        assert client.promote("b1", reason="ok").status == pb.BASELINE_STATUS_ACTIVE
        assert client.retire("b1").status == pb.BASELINE_STATUS_RETIRED
        assert client.active("ranker", "prod").id == "b1"
        assert client.window("ranker", "prod", start=1.0, end=2.0).end == 2.0
        assert client.audit("ranker", "prod", limit=5).entries[0].action == "freeze"
        assert servicer.requests[-1].limit == 5


def test_errors_map_to_client_error_with_code(baselines: tuple[CannedBaselines, str]) -> None:
    _, target = baselines
    with Client(target, timeout=5.0) as client:
        with pytest.raises(ClientError) as info:
            client.get("nope")
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        assert info.value.details == "no baseline nope"
        with pytest.raises(ClientError) as info:
            client.freeze("ranker", "prod", name="w1")
        assert info.value.code == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(ClientError) as info:
            client.rollback("ranker", "prod")
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_unreachable_server_is_a_client_error() -> None:
    with Client("127.0.0.1:1", timeout=2.0) as client, pytest.raises(ClientError) as info:
        client.active("ranker", "prod")
    assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
