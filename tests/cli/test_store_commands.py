"""Commands that work on an existing store refuse a `--db` that names none: a mistyped path must
not become a new, empty database that verifies clean or takes a pause nobody's server reads.
`interlock serve` (and `db upgrade`) still create the database on first use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.cli import main
from interlock.store import open_store

COMMANDS = [
    ["audit", "verify"],
    ["audit", "anchor"],
    ["pause", "--reason", "runaway loop"],
    ["unpause"],
    ["token", "list"],
    ["token", "create", "--agent", "ops-bot"],
    ["grants", "list"],
    ["autonomy", "show"],
    ["insights"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_missing_database_is_an_error_and_is_not_created(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "interlok.db"
    assert main([*command, "--db", f"sqlite:///{typo}"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"interlock: no database at `{typo}`: check --db (`interlock serve` creates the "
        "database on its first start)"
    ]
    assert not typo.exists()


def test_the_same_commands_work_once_the_database_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'interlock.db'}"
    open_store(url).close()  # what `interlock serve` does on its first start
    assert main(["pause", "--reason", "runaway loop", "--db", url]) == 0
    assert main(["audit", "verify", "--db", url]) == 0
    assert "ok:" in capsys.readouterr().out
    store = open_store(url)
    try:
        assert [p.reason for p in store.pauses()] == ["runaway loop"]
    finally:
        store.close()


def test_verify_takes_an_anchor_as_pasted_and_names_one_that_is_not_a_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'interlock.db'}"
    open_store(url).close()
    assert main(["pause", "--reason", "drill", "--db", url]) == 0
    assert main(["audit", "anchor", "--db", url]) == 0
    head = capsys.readouterr().out.strip()
    assert main(["audit", "verify", "--db", url, "--anchor", f" {head.upper()}\n"]) == 0
    assert main(["audit", "verify", "--db", url, "--anchor", "zz"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interlock: an anchor is the 64 hex digits `interlock audit anchor` printed, "
        "not `zz`")


def test_export_feedback_to_a_folder_that_is_not_there_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'interlock.db'}"
    open_store(url).close()
    out = tmp_path / "missing" / "feedback.jsonl"
    assert main(["export-feedback", "--db", url, "--output", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"interlock: cannot write `{out}`: No such file or directory"]
