"""Fixtures for the notification tests: a store with a fake clock, a gateway, and a real HTTP
receiver on loopback that records what it is sent and answers as each test plans.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from notify_helpers import POLICY, Receiver, serving

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.store import Store, open_store


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as state:
        yield state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'interlock.db'}", clock=clock)
    yield s
    s.close()


@pytest.fixture
def gateway(store: Store) -> Gateway:
    return Gateway(load_policy(POLICY), store, public_url="https://interlock.example")
