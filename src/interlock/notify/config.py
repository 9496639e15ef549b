"""Notification targets from the server's own configuration file (YAML, TOML or JSON).

Only addresses written here are ever called: nothing an agent submits can name a target.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from interlock.errors import BadInput
from interlock.policy.load import parse_duration

#: The environment variable naming the configuration file `interlock serve` reads.
ENV_VAR = "INTERLOCK_NOTIFY"

TargetKind = Literal["apprise", "webhook", "slack"]
_KINDS: tuple[TargetKind, ...] = ("apprise", "webhook", "slack")


class NotifyConfigError(BadInput):
    """A notification configuration file that does not load."""

    code = "invalid_notify_config"


@dataclass(frozen=True, kw_only=True)
class Target:
    """One place notifications go, and which approver groups it serves."""

    name: str
    """Unique name; deliveries are recorded per target name."""
    kind: TargetKind
    """`apprise` (any Apprise URL), `webhook` (signed JSON POST) or `slack` (with buttons)."""
    url: str
    """The Apprise URL, the webhook address, or a Slack incoming-webhook URL."""
    secret: str = field(default="", repr=False)
    """Webhook HMAC secret; for a Slack target without `url`, the bot token."""
    channel: str | None = None
    """Slack channel for `chat.postMessage` when a bot token is used instead of a URL."""
    groups: tuple[str, ...] = ()
    """Approver groups (or `user:NAME`) served; empty: every notification."""

    def wants(self, approvers: Iterable[str]) -> bool:
        """Whether a notice for these approvers goes to this target."""
        return not self.groups or any(a in self.groups for a in approvers)


@dataclass(frozen=True, kw_only=True)
class SlackUser:
    """The interlock reviewer a Slack user acts as."""

    name: str
    """Reviewer name."""
    groups: tuple[str, ...] | None = None
    """Groups given here; None: the groups of the reviewer's live tokens."""


@dataclass(frozen=True, kw_only=True)
class SlackSettings:
    """What the Slack interactivity endpoint needs."""

    signing_secret: str = field(repr=False)
    """The Slack app's signing secret."""
    users: Mapping[str, SlackUser]
    """Slack user id -> reviewer; a user not listed cannot decide."""


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Exponential backoff for failed deliveries."""

    attempts: int = 8
    """Attempts per delivery before it is given up."""
    first: float = 2.0
    """Seconds before the first retry; each later wait doubles."""
    max: float = 600.0
    """Longest wait between attempts."""

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return float(min(self.first * 2 ** max(attempts - 1, 0), self.max))


@dataclass(frozen=True, kw_only=True)
class NotifyConfig:
    """Everything the dispatcher and the Slack endpoint read."""

    targets: tuple[Target, ...] = ()
    """Where notices go."""
    slack: SlackSettings | None = None
    """Slack interactive buttons, when configured."""
    retry: Retry = field(default_factory=Retry)
    """Backoff for failed deliveries."""
    max_age: float = 86400.0
    """Events older than this when first seen are not announced (a first start on an old
    database does not page anyone about last month)."""
    interval: float = 1.0
    """Seconds between polls of the audit trail."""
    timeout: float = 10.0
    """Seconds an HTTP delivery may take."""


def load_config(path: str | Path) -> NotifyConfig:
    """Read a configuration file; the format follows the suffix (`.toml`, `.json`, else YAML)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotifyConfigError(f"cannot read the notification config `{p}`: "
                                f"{exc.strerror}") from None
    try:
        if p.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            data = YAML(typ="safe", pure=True).load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotifyConfigError(f"{p}: {first}") from None
    return parse_config(data, source=str(p))


def from_environment() -> NotifyConfig | None:
    """The configuration named by `INTERLOCK_NOTIFY`, or None when it is unset."""
    path = os.environ.get(ENV_VAR, "").strip()
    return load_config(path) if path else None


def parse_config(data: Any, *, source: str = "<config>") -> NotifyConfig:
    """Validate a parsed document; every problem is reported at once."""
    errors: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise NotifyConfigError(f"{source}: the file must hold a mapping")
    for key in data:
        if key not in ("targets", "slack", "retry", "max_age", "interval", "timeout"):
            errors.append(f"unknown key `{key}`")
    targets = _targets(data.get("targets") or [], errors)
    slack = _slack(data.get("slack"), errors)
    retry = _retry(data.get("retry") or {}, errors)
    config = NotifyConfig(
        targets=targets, slack=slack, retry=retry,
        max_age=_seconds(data.get("max_age", "1d"), "max_age", errors, 86400.0),
        interval=_seconds(data.get("interval", "1s"), "interval", errors, 1.0),
        timeout=_seconds(data.get("timeout", "10s"), "timeout", errors, 10.0),
    )
    if errors:
        raise NotifyConfigError("; ".join(f"{source}: {e}" for e in errors))
    return config


def _secret(node: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str:
    """`key` given inline, or `key_env` naming an environment variable that holds it."""
    if node.get(f"{key}_env"):
        name = str(node[f"{key}_env"])
        value = os.environ.get(name, "")
        if not value:
            errors.append(f"{where}: environment variable `{name}` ({key}_env) is not set")
        return value
    return str(node.get(key) or "")


def _groups(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    if value is None or value == "all" or value == ["all"]:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(g, str) and g for g in value):
        return tuple(value)
    errors.append(f"{where}: `groups` must be a list of group names (or `all`)")
    return ()


def _targets(items: Any, errors: list[str]) -> tuple[Target, ...]:
    if not isinstance(items, list):
        errors.append("`targets` must be a list")
        return ()
    out: list[Target] = []
    seen: set[str] = set()
    for i, node in enumerate(items):
        where = f"targets[{i}]"
        if not isinstance(node, Mapping):
            errors.append(f"{where}: a target must be a mapping")
            continue
        kinds = [k for k in _KINDS if k in node]
        if len(kinds) != 1:
            errors.append(f"{where}: give exactly one of `apprise`, `webhook`, `slack`")
            continue
        kind = kinds[0]
        known = {"name", "groups", kind, "secret", "secret_env", "token", "token_env",
                 "channel"}
        for key in node:
            if key not in known:
                errors.append(f"{where}: unknown key `{key}`")
        name = str(node.get("name") or f"{kind}-{i + 1}")
        if name in seen:
            errors.append(f"{where}: target name `{name}` is used twice")
        seen.add(name)
        url = node[kind]
        groups = _groups(node.get("groups"), where, errors)
        if kind == "slack" and isinstance(url, Mapping):
            errors.append(f"{where}: `slack` is an incoming-webhook URL, or `true` with "
                          "`token` and `channel`")
            continue
        if kind == "slack" and url is True:
            token = _secret(node, "token", where, errors)
            channel = node.get("channel")
            if not token or not isinstance(channel, str) or not channel:
                errors.append(f"{where}: a Slack bot target needs `token` and `channel`")
            out.append(Target(name=name, kind=kind, url="", secret=token,
                              channel=str(channel or ""), groups=groups))
            continue
        if not isinstance(url, str) or "://" not in url:
            errors.append(f"{where}: `{kind}` must be a URL")
            continue
        secret = ""
        if kind == "webhook":
            secret = _secret(node, "secret", where, errors)
            if not secret:
                errors.append(f"{where}: a webhook needs a `secret` (or `secret_env`) to sign "
                              "with")
            if not url.startswith(("http://", "https://")):
                errors.append(f"{where}: a webhook URL must be http:// or https://")
        out.append(Target(name=name, kind=kind, url=url, secret=secret, groups=groups))
    return tuple(out)


def _slack(node: Any, errors: list[str]) -> SlackSettings | None:
    if node is None:
        return None
    if not isinstance(node, Mapping):
        errors.append("`slack` must be a mapping")
        return None
    for key in node:
        if key not in ("signing_secret", "signing_secret_env", "users"):
            errors.append(f"slack: unknown key `{key}`")
    secret = _secret(node, "signing_secret", "slack", errors)
    if not secret:
        errors.append("slack: `signing_secret` (or `signing_secret_env`) is required")
    users: dict[str, SlackUser] = {}
    raw = node.get("users") or {}
    if not isinstance(raw, Mapping):
        errors.append("slack: `users` maps Slack user ids to reviewer names")
        raw = {}
    for uid, who in raw.items():
        if isinstance(who, str) and who:
            users[str(uid)] = SlackUser(name=who)
        elif isinstance(who, Mapping) and isinstance(who.get("name"), str):
            groups = who.get("groups")
            users[str(uid)] = SlackUser(
                name=who["name"],
                groups=None if groups is None else _groups(groups, f"slack.users.{uid}", errors),
            )
        else:
            errors.append(f"slack.users.{uid}: a reviewer name, or `{{name, groups}}`")
    return SlackSettings(signing_secret=secret, users=users)


def _retry(node: Any, errors: list[str]) -> Retry:
    if not isinstance(node, Mapping):
        errors.append("`retry` must be a mapping")
        return Retry()
    attempts = node.get("attempts", 8)
    if not isinstance(attempts, int) or attempts < 1:
        errors.append("retry.attempts must be a positive integer")
        attempts = 8
    return Retry(attempts=attempts,
                 first=_seconds(node.get("first", "2s"), "retry.first", errors, 2.0),
                 max=_seconds(node.get("max", "10m"), "retry.max", errors, 600.0))


def _seconds(value: Any, where: str, errors: list[str], default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    parsed = parse_duration(value)
    if parsed is None:
        errors.append(f"{where}: `{value}` is not a duration like `30s`, `5m`, `1h`")
        return default
    return parsed
