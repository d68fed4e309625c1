"""The fleet-mode part of the Store contract: leases with fencing tokens and the
leader-written alert state, on every backend (SQLite memory and file, Redis,
Redis Cluster)."""

from __future__ import annotations

import threading

import pytest

from sidecar.errors import Conflict, InvalidInput
from sidecar.stores import Store
from tests.stores.test_contract import Backend, backend, store  # noqa: F401 - fixtures

TTL = 0.4  # seconds: Redis backends really wait for expiry


def test_first_acquire_wins_and_others_are_refused(store: Store) -> None:  # noqa: F811
    token = store.acquire_lease("fraud", "prod", "a", TTL * 10)
    assert token is not None and token >= 1
    assert store.acquire_lease("fraud", "prod", "b", TTL * 10) is None
    assert store.lease_holder("fraud", "prod") == ("a", token)
    # the holder asking again keeps its token; other scopes are separate leases
    assert store.acquire_lease("fraud", "prod", "a", TTL * 10) == token
    assert store.acquire_lease("fraud", "staging", "b", TTL * 10) is not None
    assert store.acquire_lease("churn", "prod", "b", TTL * 10) is not None
    assert store.lease_holder("nobody", "prod") is None


def test_expired_lease_is_taken_over_with_a_larger_token(backend: Backend) -> None:  # noqa: F811
    st = backend.store
    first = st.acquire_lease("fraud", "prod", "a", TTL)
    assert first is not None
    backend.advance(TTL * 1.5)
    assert st.lease_holder("fraud", "prod") is None
    second = st.acquire_lease("fraud", "prod", "b", TTL * 10)
    assert second is not None and second > first
    # the old holder can neither renew nor release, nor write alert state
    assert not st.renew_lease("fraud", "prod", "a", first, TTL)
    assert not st.release_lease("fraud", "prod", "a", first)
    with pytest.raises(Conflict):
        st.write_alert_state("fraud", "prod", "a", first, b"stale")
    assert st.lease_holder("fraud", "prod") == ("b", second)
    assert st.read_alert_states("fraud") == {}


def test_renew_keeps_the_lease_past_its_first_ttl(backend: Backend) -> None:  # noqa: F811
    st = backend.store
    token = st.acquire_lease("fraud", "prod", "a", TTL)
    assert token is not None
    for _ in range(3):
        backend.advance(TTL / 2)
        assert st.renew_lease("fraud", "prod", "a", token, TTL)
    assert st.acquire_lease("fraud", "prod", "b", TTL) is None
    assert st.lease_holder("fraud", "prod") == ("a", token)
    # renewing with the wrong token or holder changes nothing
    assert not st.renew_lease("fraud", "prod", "a", token + 1, TTL)
    assert not st.renew_lease("fraud", "prod", "b", token, TTL)


def test_release_frees_the_lease_and_the_next_token_is_larger(store: Store) -> None:  # noqa: F811
    token = store.acquire_lease("fraud", "prod", "a", 30)
    assert token is not None
    assert not store.release_lease("fraud", "prod", "b", token)  # not b's to give
    assert store.release_lease("fraud", "prod", "a", token)
    assert store.lease_holder("fraud", "prod") is None
    nxt = store.acquire_lease("fraud", "prod", "b", 30)
    assert nxt is not None and nxt > token
    assert not store.release_lease("fraud", "prod", "a", token)  # twice: no effect


def test_alert_state_is_fenced_by_the_lease(store: Store) -> None:  # noqa: F811
    token = store.acquire_lease("fraud", "prod", "a", 30)
    assert token is not None
    store.write_alert_state("fraud", "prod", "a", token, b"\x00state-1")
    store.write_alert_state("fraud", "prod", "a", token, b"\x00state-2")
    with pytest.raises(Conflict):
        store.write_alert_state("fraud", "prod", "b", token, b"intruder")
    with pytest.raises(Conflict):
        store.write_alert_state("fraud", "prod", "a", token + 1, b"wrong token")
    with pytest.raises(Conflict):  # no lease at all on staging
        store.write_alert_state("fraud", "staging", "a", token, b"no lease")
    other = store.acquire_lease("churn", "prod", "a", 30)
    assert other is not None
    store.write_alert_state("churn", "prod", "a", other, b"churn")
    assert store.read_alert_states("fraud") == {("fraud", "prod"): b"\x00state-2"}
    assert store.read_alert_states("nobody") == {}
    assert store.read_alert_states() == {
        ("fraud", "prod"): b"\x00state-2",
        ("churn", "prod"): b"churn",
    }


def test_only_one_of_many_concurrent_acquirers_wins(store: Store) -> None:  # noqa: F811
    tokens: list[int | None] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        got = store.acquire_lease("fraud", "prod", name, 30)
        with lock:
            tokens.append(got)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [t for t in tokens if t is not None]
    assert len(won) == 1
    holder = store.lease_holder("fraud", "prod")
    assert holder is not None and holder[1] == won[0]


def test_lease_arguments_are_checked(store: Store) -> None:  # noqa: F811
    with pytest.raises(InvalidInput):
        store.acquire_lease("", "prod", "a", 10)
    with pytest.raises(InvalidInput):
        store.acquire_lease("fraud", "", "a", 10)
    with pytest.raises(InvalidInput):
        store.acquire_lease("fraud", "prod", "", 10)
    with pytest.raises(InvalidInput):
        store.acquire_lease("fraud", "prod", "a", 0)
    with pytest.raises(InvalidInput):
        store.acquire_lease("fraud", "prod", "a", float("nan"))
    assert store.lease_holder("fraud", "prod") is None
