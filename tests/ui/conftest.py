"""Fixtures for the reviewer UI tests: a fresh gateway and store per test, and a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import Env, TestClient


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.store.close()


@pytest.fixture
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(env.app(), base_url="http://testserver") as c:
        yield c
