"""Four-eyes promotion, policies and audit verification over real gRPC (a
Sidecar on 127.0.0.1 port 0, on a real SQLite file and on real Redis)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from baselined.v1 import baselined_pb2 as pb
from baselined.v1 import baselined_pb2_grpc as pb_grpc

from sidecar.cli import main as cli
from sidecar.stores import RedisStore, SQLiteStore
from sidecar.stores.base import Store
from tests.sidecar.test_baselines import ENV, MODEL, T0, FakeClock, make_batch
from tests.sidecar.test_server import Running, code_of, settings_for


class Served:
    """A running sidecar with the stubs the tests use."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self.running = Running(settings_for(), store=store, clock=clock)
        self.clock = clock
        channel = self.running.channel
        self.ingest = pb_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]
        self.baselines = pb_grpc.BaselinesStub(channel)  # type: ignore[no-untyped-call]
        self.gov = pb_grpc.GovernanceStub(channel)  # type: ignore[no-untyped-call]
        self.target = f"127.0.0.1:{self.running.sidecar.port}"

    def freeze(self, name: str, actor: str) -> pb.Baseline:
        self.ingest.IngestBatch(make_batch(latency=[0.01 * (i + 1) for i in range(50)], at=T0))
        self.clock.now += 1.0
        baseline: pb.Baseline = self.baselines.FreezeBaseline(
            pb.FreezeBaselineRequest(
                model=MODEL, environment=ENV, name=name, reason="weekly", actor=actor
            )
        )
        return baseline

    def four_eyes(self, actor: str = "alice", owners: tuple[str, ...] = ()) -> pb.Policy:
        policy: pb.Policy = self.gov.SetPolicy(
            pb.SetPolicyRequest(
                policy=pb.Policy(model=MODEL, environment=ENV, four_eyes=True, owners=owners),
                reason="regulated model",
                actor=actor,
            )
        )
        return policy

    def audit(self) -> list[pb.AuditEntry]:
        response = self.baselines.ListAudit(pb.ListAuditRequest(model=MODEL))
        return list(response.entries)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    store: Store
    if request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "gov.db"))
    else:
        url: str = request.getfixturevalue("redis_url")
        store = RedisStore(url, prefix=request.getfixturevalue("redis_prefix"))
    served = Served(store, FakeClock(T0 + 10.0))
    yield served
    served.running.stop()


def test_four_eyes_needs_a_second_admin(served: Served) -> None:
    served.four_eyes()
    frozen = served.freeze("w1", actor="alice")

    # alice asks to promote: nothing becomes active, a request waits
    asked = served.baselines.PromoteBaseline(
        pb.PromoteBaselineRequest(id=frozen.id, reason="ship it", actor="alice")
    )
    assert asked.status == pb.BASELINE_STATUS_CANDIDATE
    code, _ = code_of(
        lambda: served.baselines.GetActiveBaseline(
            pb.GetActiveBaselineRequest(model=MODEL, environment=ENV)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    pending = served.gov.ListPending(pb.ListPendingRequest(model=MODEL)).pending
    assert [(p.baseline_id, p.requested_by, p.reason) for p in pending] == [
        (frozen.id, "alice", "ship it")
    ]

    # the freezing admin's own approval is refused, naming the rule; nothing changes
    before = served.audit()
    code, details = code_of(
        lambda: served.gov.ApproveBaseline(
            pb.ApproveBaselineRequest(id=frozen.id, reason="me again", actor="alice")
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "four-eyes" in details and "alice froze" in details
    assert served.audit() == before

    # another admin's approval activates it
    approved = served.gov.ApproveBaseline(
        pb.ApproveBaselineRequest(id=frozen.id, reason="reviewed the window", actor="bob")
    )
    assert approved.status == pb.BASELINE_STATUS_ACTIVE
    active = served.baselines.GetActiveBaseline(
        pb.GetActiveBaselineRequest(model=MODEL, environment=ENV)
    )
    assert active.id == frozen.id
    assert list(served.gov.ListPending(pb.ListPendingRequest(model=MODEL)).pending) == []

    # request and approval are both in the audit log, and the chain verifies
    entries = served.audit()
    assert [(e.action, e.actor) for e in entries] == [
        ("set_policy", "alice"),
        ("freeze", "alice"),
        ("promote_requested", "alice"),
        ("approve", "bob"),
    ]
    approval = json.loads(entries[-1].after)
    assert approval["approved_by"] == "bob" and approval["frozen_by"] == "alice"
    assert approval["requested_by"] == "alice" and approval["status"] == "active"
    assert all(e.hash and e.prev_hash == p.hash for p, e in itertools.pairwise(entries))
    verified = served.gov.VerifyAudit(pb.VerifyAuditRequest(model=MODEL))
    assert verified.ok and verified.checked == 4


def test_the_admin_who_asked_cannot_approve_either(served: Served) -> None:
    served.four_eyes()
    frozen = served.freeze("w1", actor="carol")
    served.baselines.PromoteBaseline(
        pb.PromoteBaselineRequest(id=frozen.id, reason="go", actor="alice")
    )
    code, details = code_of(
        lambda: served.gov.ApproveBaseline(
            pb.ApproveBaselineRequest(id=frozen.id, reason="ok", actor="alice")
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "alice asked to promote" in details
    done = served.gov.ApproveBaseline(pb.ApproveBaselineRequest(id=frozen.id, actor="bob"))
    assert done.status == pb.BASELINE_STATUS_ACTIVE


def test_a_retired_baseline_cannot_be_approved(served: Served) -> None:
    served.four_eyes()
    frozen = served.freeze("w1", actor="alice")
    served.baselines.PromoteBaseline(pb.PromoteBaselineRequest(id=frozen.id, actor="alice"))
    served.baselines.RetireBaseline(
        pb.RetireBaselineRequest(id=frozen.id, reason="bad week", actor="alice")
    )
    assert list(served.gov.ListPending(pb.ListPendingRequest()).pending) == []
    before = served.audit()
    code, details = code_of(
        lambda: served.gov.ApproveBaseline(pb.ApproveBaselineRequest(id=frozen.id, actor="bob"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "retired" in details
    assert served.audit() == before


def test_without_four_eyes_promote_activates_at_once(served: Served) -> None:
    frozen = served.freeze("w1", actor="alice")
    promoted = served.baselines.PromoteBaseline(
        pb.PromoteBaselineRequest(id=frozen.id, actor="alice")
    )
    assert promoted.status == pb.BASELINE_STATUS_ACTIVE
    assert [e.action for e in served.audit()] == ["freeze", "promote"]


def test_policies_are_stored_audited_and_validated(served: Served) -> None:
    default = served.gov.GetPolicy(pb.GetPolicyRequest(model=MODEL, environment=ENV))
    assert not default.four_eyes and list(default.owners) == []
    served.four_eyes(owners=("team-risk", "alice", "team-risk"))
    stored = served.gov.GetPolicy(pb.GetPolicyRequest(model=MODEL, environment=ENV))
    assert stored.four_eyes and list(stored.owners) == ["team-risk", "alice"]
    other = served.gov.GetPolicy(pb.GetPolicyRequest(model=MODEL, environment="staging"))
    assert not other.four_eyes
    (entry,) = served.audit()
    assert entry.action == "set_policy" and entry.reason == "regulated model"
    assert json.loads(entry.before) == {"four_eyes": False, "owners": []}
    assert json.loads(entry.after) == {"four_eyes": True, "owners": ["team-risk", "alice"]}

    code, details = code_of(lambda: served.four_eyes(owners=("  ",)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "owner" in details
    code, _ = code_of(lambda: served.gov.GetPolicy(pb.GetPolicyRequest(model=MODEL)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(served.audit()) == 1


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_governs_a_model(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    t = ("--target", served.target)
    m = ("--model", MODEL, "--environment", ENV)
    code, out, _ = _cli(
        capsys, "policy", "set", *m, "--four-eyes", "--owner", "team-risk", "--actor", "alice", *t
    )
    assert code == 0 and "four-eyes: on" in out and "team-risk" in out
    code, out, _ = _cli(capsys, "policy", "show", *m, *t)
    assert code == 0 and "four-eyes: on" in out
    frozen = served.freeze("w1", actor="alice")
    code, out, _ = _cli(
        capsys, "baselines", "promote", frozen.id, "--reason", "go", "--actor", "alice", *t
    )
    assert code == 0 and "waits for approval by another admin" in out
    code, out, _ = _cli(capsys, "baselines", "pending", *t)
    assert code == 0 and frozen.id in out and "alice" in out
    code, _, err = _cli(
        capsys, "baselines", "approve", frozen.id, "--reason", "x", "--actor", "alice", *t
    )
    assert code == 1 and "FAILED_PRECONDITION" in err and "four-eyes" in err
    code, out, _ = _cli(
        capsys, "baselines", "approve", frozen.id, "--reason", "ok", "--actor", "bob", *t
    )
    assert code == 0 and "is now active" in out
    code, out, _ = _cli(capsys, "audit", "list", "--model", MODEL, "--json", *t)
    data: dict[str, Any] = json.loads(out)
    assert [e["action"] for e in data["entries"]][-2:] == ["promote_requested", "approve"]
    code, out, _ = _cli(capsys, "audit", "verify", *t)
    assert code == 0 and "verified" in out
