"""Fixtures for the insights tests: a fresh store on a fake clock, seeded with a known history."""

from __future__ import annotations

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
