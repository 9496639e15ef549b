"""Fixtures for the SDK tests: a policy file, embedded Gates on SQLite in tmp_path, a gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import POLICY, Desk

from interlock import Gate
from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.store import Store, open_store


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "interlock.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'interlock.db'}"


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
def make_gate(policy_path: Path, db_url: str, tmp_path: Path) -> Iterator[Callable[..., Gate]]:
    gates: list[Gate] = []

    def make(channel: Any = "web", **kwargs: Any) -> Gate:
        kwargs.setdefault("state_dir", tmp_path / "state")
        gate = Gate.from_policy(policy_path, db=db_url, channel=channel, agent="bot",
                                poll=0.01, **kwargs)
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.close()


@pytest.fixture
def store(db_url: str, make_gate: Callable[..., Gate]) -> Iterator[Store]:
    make_gate()  # creates the schema
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def gateway(policy_path: Path, store: Store) -> Gateway:
    return Gateway(load_policy(policy_path), store)
