"""`interlock insights apply`: a tightening rewrites the file, a loosening prints the request a
second admin approves, a stale id is one line and writes nothing; the audit chain still holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from apply_support import admins, advice, changes
from insights_history import History

from interlock.cli import main

WIDE = "5000d"  # the CLI reads the wall clock; the seeded history lies in 2023


def test_tightening_from_the_terminal(local: History, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(local.gateway.policy.file)
    item = advice(local.store, path, "tighten_gate")
    rc = main(["insights", "apply", item["id"], "--db", local.store.url, "--policy", str(path),
               "--window", WIDE, "--as", "ann", "--reason", "a flagged email"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out == item["diff"]
    assert err.startswith(f"applied {item['id']} to {path}: policy ")
    assert "review-send-email" in path.read_text()
    [entry] = changes(local.store)
    assert entry.actor == "admin:ann" and entry.data["reason"] == "a flagged email"
    assert main(["audit", "verify", "--db", local.store.url]) == 0
    capsys.readouterr()
    # Stale now: one line, exit 1, nothing written.
    rc = main(["insights", "apply", item["id"], "--db", local.store.url, "--policy", str(path),
               "--window", WIDE])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("interlock: ") and "changed since" in err
    assert err.count("\n") == 1 and len(changes(local.store)) == 1


def test_loosening_prints_the_request(local: History, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(local.gateway.policy.file)
    before = path.read_text()
    item = advice(local.store, path, "allowlist")
    args = ["insights", "apply", item["id"], "--db", local.store.url, "--policy", str(path),
            "--window", WIDE, "--as", "ann"]
    assert main(args) == 1
    assert "no other admin token exists" in capsys.readouterr().err
    admins(local.store, "ann", "bob")
    assert main(args) == 0
    out, err = capsys.readouterr()
    rid = out.strip()
    assert local.store.get(rid).action_name == "policy.change"
    assert f"interlock approve {rid}" in err and "second admin" in err
    assert path.read_text() == before


def test_listing_names_the_apply_command(local: History, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    path = Path(local.gateway.policy.file)
    assert main(["insights", "--db", local.store.url, "--policy", str(path),
                 "--window", WIDE]) == 0
    out = capsys.readouterr().out
    item = advice(local.store, path, "tighten_gate")
    assert f"interlock insights apply {item['id']}" in out


def test_usage_errors(local: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["insights", "apply", "x@0123456789ab", "--db", local.store.url,
                 "--policy", str(tmp_path / "missing.yaml")]) == 1
    assert "no policy file" in capsys.readouterr().err
    assert main(["insights", "apply", "x@0123456789ab", "--server", "http://127.0.0.1:9",
                 "--token", "t", "--db", local.store.url]) == 1
    assert "leave out --db" in capsys.readouterr().err
    assert main(["insights", "apply", "--help"]) == 0
    assert "second admin" in capsys.readouterr().out
