"""The notification configuration: three file formats, every error at once, secrets from env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.gateway import Gateway
from interlock.notify import (
    ENV_VAR,
    Dispatcher,
    Idle,
    NotifyConfigError,
    load_config,
    parse_config,
    start,
)
from interlock.server.settings import ServerSettings


def test_yaml_toml_and_json_load_alike(tmp_path: Path) -> None:
    (tmp_path / "n.yaml").write_text(
        "targets:\n  - {name: ops, apprise: 'ntfy://ntfy.sh/ops', groups: [on-call]}\n"
        "retry: {attempts: 3, first: 1s, max: 1m}\n")
    (tmp_path / "n.toml").write_text(
        '[[targets]]\nname = "ops"\napprise = "ntfy://ntfy.sh/ops"\ngroups = ["on-call"]\n'
        '[retry]\nattempts = 3\nfirst = "1s"\nmax = "1m"\n')
    (tmp_path / "n.json").write_text(json.dumps({
        "targets": [{"name": "ops", "apprise": "ntfy://ntfy.sh/ops", "groups": ["on-call"]}],
        "retry": {"attempts": 3, "first": "1s", "max": "1m"}}))
    configs = [load_config(tmp_path / f"n.{ext}") for ext in ("yaml", "toml", "json")]
    assert configs[0] == configs[1] == configs[2]
    [target] = configs[0].targets
    assert target.groups == ("on-call",) and target.wants(["on-call"])
    assert not target.wants(["finance"])
    assert [configs[0].retry.delay(n) for n in (1, 2, 3, 8)] == [1.0, 2.0, 4.0, 60.0]


def test_every_error_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    with pytest.raises(NotifyConfigError) as caught:
        parse_config({
            "targets": [
                {"webhook": "https://example.com/hook"},
                {"webhook": "ftp://example.com", "secret_env": "MISSING_SECRET"},
                {"apprise": "x://y", "slack": "https://hooks.slack.com/x"},
            ],
            "slack": {"users": {"U1": 3}},
            "colour": "blue",
        })
    message = caught.value.message
    for part in ("needs a `secret`", "`MISSING_SECRET`", "http:// or https://",
                 "exactly one of", "signing_secret", "slack.users.U1", "unknown key `colour`"):
        assert part in message, part


def test_start_runs_only_with_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: Gateway
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert isinstance(start(gateway, ServerSettings()), Idle)
    path = tmp_path / "n.yaml"
    path.write_text("targets:\n  - {webhook: 'http://127.0.0.1:9/x', secret: k}\n")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert isinstance(start(gateway, ServerSettings(), background=False), Idle)
    running = start(gateway, ServerSettings())
    assert isinstance(running, Dispatcher)
    running.stop()


def test_an_apprise_url_apprise_cannot_read_stops_the_start(gateway: Gateway) -> None:
    config = parse_config({"targets": [{"apprise": "nosuchscheme://x"}]})
    with pytest.raises(NotifyConfigError, match="apprise does not understand"):
        Dispatcher(gateway, config)
