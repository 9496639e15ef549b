"""`interlock insights` prints the tables and advice; `export-feedback` writes JSONL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from insights_history import POLICY, History

from interlock.cli import main


def test_insights_prints_the_table_and_advice(history: History, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    # The CLI reads the wall clock; the seeded history lies in 2023.
    rc = main(["insights", "--db", history.store.url, "--by", "action",
               "--policy", str(POLICY), "--window", "5000d"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Per action over the last 5000d" in out
    row = next(line for line in out.splitlines() if "refund" in line and "%" in line)
    assert "50.0%" in row and "40.0%" in row and "1.7m" in row
    assert "allowlist: `ticket.label` is approved untouched 100.0% of the time" in out
    assert "rubber_stamping: `alice`" in out
    assert "+    decision: allow" in out
    assert "second admin" in out


def test_insights_json_and_default_policy(history: History, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(POLICY, tmp_path / "interlock.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["insights", "--db", history.store.url, "--json", "--window", "5000d"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy_file"] == "interlock.yaml" and data["by"] == "rule"
    assert len(data["advice"]) == 4
    assert all(a["diff"] for a in data["advice"] if a["kind"] != "rubber_stamping")


def test_insights_bad_input_is_one_line(history: History,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["insights", "--db", history.store.url, "--window", "soon"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interlock: a window is") and "\n" not in err


def test_export_feedback_to_a_file(history: History, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "feedback.jsonl"
    assert main(["export-feedback", "--db", history.store.url, "--output", str(target)]) == 0
    assert "wrote 77 lines" in capsys.readouterr().err
    records = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(records) == 77
    assert {r["label"] for r in records} == {"negative", "correction", "regression", None}
