"""Crash suite, fast subset: `interlock serve` killed with SIGKILL 5 times on each backend
under load, then SPEC §8's guarantees checked (the full run is `python -m bench.chaos`).
"""

from __future__ import annotations

import pytest
from bench.chaos import run, table

KILLS = 5


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_serve_killed_under_load(backend: str) -> None:
    result = run(backend, kills=KILLS, seconds=60.0, agents=4, reviewers=1, seed=3)
    assert result.kills == KILLS, table([result])
    assert result.requests > 0 and result.decisions > 0 and result.claims > 0, table([result])
    # each agent walked away from one last ticket; reviewers approved it; resume claimed it
    assert result.resumed >= 1, table([result])
    assert not result.violations, "\n".join([table([result]), *result.violations])
