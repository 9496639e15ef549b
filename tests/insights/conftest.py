"""Fixtures for the insights tests: a fresh store on a fake clock, seeded with a known history;
`local` runs the same history under a copy of the policy that applying advice may rewrite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from insights_history import POLICY, START, History, seed

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.store import Store, open_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'interlock.db'}", clock=clock)
    yield s
    s.close()


@pytest.fixture
def history(store: Store, clock: FakeClock) -> History:
    return seed(Gateway(load_policy(POLICY), store), clock)


@pytest.fixture
def local(store: Store, clock: FakeClock, tmp_path: Path) -> History:
    """The seeded history, decided under `tmp_path/interlock.yaml` (a copy of the policy)."""
    path = tmp_path / "interlock.yaml"
    shutil.copy(POLICY, path)
    return seed(Gateway(load_policy(path), store), clock)
