"""`interlock serve` binds its port before anything else: a port it cannot have is one line on
stderr, with no database created and no sign-in link printed for a server that never ran."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from interlock.cli import main


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the starter policy is written to the working directory
    return tmp_path


def test_a_taken_port_is_one_line_and_nothing_is_created(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--db", f"sqlite:///{here / 'x.db'}"]) == 1
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == (
        f"interlock: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "pick another --port or --host")
    assert "login?token=" not in out
    assert not (here / "x.db").exists()


@pytest.mark.parametrize("args", [["--port", "99999"], ["--port", "-1"]])
def test_a_port_out_of_range_is_a_usage_error(
    args: list[str], here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *args, "--db", f"sqlite:///{here / 'x.db'}"]) == 2
    assert "Invalid value for '--port'" in capsys.readouterr().err
    assert not (here / "x.db").exists()


def test_an_address_this_host_does_not_have_is_one_line(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # TEST-NET-1 (RFC 5737): never assigned to a host, so binding to it fails at once
    assert main(["serve", "--host", "192.0.2.1", "--port", "0",
                 "--db", f"sqlite:///{here / 'x.db'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interlock: cannot listen on 192.0.2.1:0: ")
    assert not (here / "x.db").exists()


@pytest.mark.parametrize("url", ["not a url", "interlock.example.com", "ftp://x.example",
                                 "https://x.example/?next=1"])
def test_a_public_url_that_is_not_an_absolute_http_url_is_refused(
    url: str, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--public-url", url, "--port", "0",
                 "--db", f"sqlite:///{here / 'x.db'}"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "interlock: --public-url takes an absolute http(s) URL such as "
        f"https://interlock.example.com, not `{url}`"]
    assert not (here / "x.db").exists()
    assert not (here / "interlock.yaml").exists()
