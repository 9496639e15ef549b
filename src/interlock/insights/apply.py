"""Applying one advice item: the change is made again on the current policy file, checked to
load, written atomically with its comments kept, and audited as `policy.changed`.

A change that loosens a gate is a gate on the gate (SPEC §8): like an autonomy level, it is
stored as a `policy.change` request of the built-in `interlock` agent that a second admin
approves; approving it applies it once, by claiming it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from interlock.autonomy import claim_approved, gate_result, require_second_admin
from interlock.errors import BadInput, Conflict, InterlockError, NotFound, PolicyError
from interlock.insights import policy_edit as pe
from interlock.insights.advice import Advice, advise, text_hash
from interlock.insights.figures import report
from interlock.policy import Policy, load_policy_text
from interlock.store import Request, Store
from interlock.store.autonomy import INTERLOCK_AGENT

__all__ = [
    "CHANGED_EVENT",
    "CHANGE_ACTION",
    "AdviceGone",
    "Applied",
    "NotApplicable",
    "PolicyChanged",
    "PolicyUnwritable",
    "apply_advice",
    "apply_approved",
    "find",
    "is_gated_change",
    "write_change",
]

#: The action name of a gated policy change.
CHANGE_ACTION = "policy.change"
#: The audit event of every policy file rewritten through interlock.
CHANGED_EVENT = "policy.changed"
#: Advice is looked for over this window unless told otherwise.
DEFAULT_WINDOW = 7 * 86400.0
_DAY = 86400.0
#: One writer at a time in this process; `flock` on the directory keeps other processes out.
_WRITING = threading.Lock()

Swap = Callable[[Policy], None]


class PolicyChanged(Conflict):
    """409: the policy file is not the one the suggestion was computed against."""

    code = "policy_changed"


class AdviceGone(NotFound):
    """404: no advice with that id over the window (never was, or the figures moved)."""

    code = "no_such_advice"


class NotApplicable(BadInput):
    """422: the advice has no policy change, or there is no policy file to change."""

    code = "not_applicable"


class PolicyUnwritable(Conflict):
    """409: the policy file cannot be read or replaced (permissions, a read-only mount)."""

    code = "policy_unwritable"


@dataclass(frozen=True, kw_only=True)
class Applied:
    """What asking to apply an advice item did."""

    status: Literal["applied", "pending"]
    """applied: the file was rewritten; pending: a second admin must approve `request_id`."""
    advice_id: str
    """The advice item."""
    kind: str
    """Its kind."""
    file: str
    """The policy file."""
    diff: str
    """The change, as a unified diff of the file."""
    old_hash: str
    """The policy hash before."""
    new_hash: str | None
    """The policy hash after (None while pending)."""
    request_id: str | None = None
    """The `policy.change` request a second admin approves (pending only)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def find(store: Store, policy_file: str | None, advice_id: str, *,
         window: float = DEFAULT_WINDOW) -> Advice:
    """The advice item `advice_id` computed now, against the policy file as it is now."""
    text = pe.read_source(policy_file)
    if text is None or policy_file is None:
        raise NotApplicable("there is no readable policy file to apply advice to"
                            + (f" (`{policy_file}`)" if policy_file else ""))
    current = text_hash(text)
    _, at, short = advice_id.rpartition("@")
    if not at or len(short) < 12:
        raise AdviceGone(f"`{advice_id}` is not an advice id: ids look like "
                         "`allowlist-action-NAME@HASH` (see `interlock insights`)")
    if not current.startswith(short):
        raise PolicyChanged(
            f"`{policy_file}` changed since advice `{advice_id}` was computed (it was "
            f"{short}, it is {current[:12]} now): look at `interlock insights` again and "
            "apply the fresh suggestion")
    name = os.path.basename(policy_file)
    for advice in advise(report(store, window=window), text, name):
        if advice.id == advice_id:
            return advice
    raise AdviceGone(f"no advice `{advice_id}` over this window: its figures no longer cross "
                     "its threshold, or the window is another one")


def apply_advice(
    store: Store, *, policy_file: str | None, advice_id: str, admin: str,
    window: float = DEFAULT_WINDOW, reason: str | None = None, swap: Swap | None = None,
    served_hash: str | None = None,
) -> Applied:
    """Apply an advice item for `admin`: a tightening at once, a loosening as a pending
    request for a second admin. A server passes the hash it decides with (`served_hash`) and
    `swap`, which receives the new policy when the file was rewritten."""
    advice = find(store, policy_file, advice_id, window=window)
    assert policy_file is not None and advice.policy_hash is not None
    _check_served(policy_file, advice.policy_hash, served_hash)
    if advice.diff is None or not advice.changes:
        raise NotApplicable(f"advice `{advice_id}` has no policy change to apply: "
                            + ("it is about how people review" if advice.kind ==
                               "rubber_stamping" else "the policy cannot express it as is"))
    base = {"file": policy_file, "advice_id": advice.id, "kind": advice.kind,
            "diff": advice.diff, "old_hash": advice.policy_hash}
    if advice.loosens or loosens(advice.changes):
        request = propose(store, advice=advice, requested_by=admin, reason=reason)
        return Applied(status="pending", new_hash=None, request_id=request.id, **base)
    policy = write_change(
        store, path=policy_file, base_hash=advice.policy_hash, changes=advice.changes,
        expected_diff=advice.diff, actor=f"admin:{admin}", served_hash=served_hash,
        data={"advice_id": advice.id, "kind": advice.kind, "subject": advice.subject,
              "reason": reason, "requested_by": admin},
    )
    if swap is not None:
        swap(policy)
    return Applied(status="applied", new_hash=policy.hash, **base)


def loosens(changes: Sequence[pe.Change]) -> bool:
    """Whether the changes let anything run that waited for people before."""
    return any(isinstance(c, pe.RuleToAllow)
               or (isinstance(c, pe.AddRule) and c.decision == "allow") for c in changes)


# --- the second admin ---------------------------------------------------------------------

def propose(store: Store, *, advice: Advice, requested_by: str,
            reason: str | None = None) -> Request:
    """Store a loosening change as a pending `policy.change` request for a second admin."""
    require_second_admin(store, requested_by, "this change loosens a gate and")
    assert advice.policy_hash is not None and advice.diff is not None
    return store.submit(
        agent=INTERLOCK_AGENT,
        action={
            "action": CHANGE_ACTION, "agent": INTERLOCK_AGENT, "risk": "high",
            "args": {"advice_id": advice.id, "kind": advice.kind, "subject": advice.subject,
                     "title": advice.title, "policy_hash": advice.policy_hash,
                     "changes": [asdict(c) for c in advice.changes], "why": reason,
                     "requested_by": requested_by},
            "reason": f"{requested_by} asks to apply advice {advice.id}: {advice.title}"
                      + (f" ({reason})" if reason else ""),
            "preview": {"kind": "diff", "content": advice.diff},
        },
        result=gate_result(
            advice.policy_hash, "a policy change that loosens a gate needs a second admin",
            guidance="This policy change lets more actions run without a person: read the "
            "diff and the figures behind it."),
    )


def is_gated_change(request: Request) -> bool:
    return request.agent == INTERLOCK_AGENT and request.action_name == CHANGE_ACTION


def apply_approved(store: Store, request_id: str, *, policy_file: str | None,
                   swap: Swap | None = None, served_hash: str | None = None) -> Request:
    """Apply an approved `policy.change` request once, to `policy_file`; any other state is
    left as it is. A change that cannot be made (the file changed since) ends `failed`."""
    request, claim = claim_approved(store, request_id, is_change=is_gated_change,
                                    what="a policy change")
    if claim is None:
        return request
    args = claim.args
    preview = request.action.get("preview")
    diff = preview.get("content") if isinstance(preview, dict) else None
    approvers = sorted({v.reviewer for v in store.votes(request_id) if v.verdict == "approve"})
    try:
        if pe.read_source(policy_file) is None or policy_file is None:
            raise NotApplicable("the approving server's policy was not read from a file")
        policy = write_change(
            store, path=policy_file, base_hash=str(args.get("policy_hash")),
            changes=[pe.change_from_json(c) for c in args.get("changes") or ()],
            expected_diff=diff if isinstance(diff, str) else None,
            actor=f"admin:{args.get('requested_by')}", request_id=request_id,
            served_hash=served_hash,
            data={"advice_id": args.get("advice_id"), "kind": args.get("kind"),
                  "subject": args.get("subject"), "reason": args.get("why"),
                  "requested_by": args.get("requested_by"), "approved_by": approvers},
        )
    except InterlockError as exc:
        return store.outcome(request_id, agent=INTERLOCK_AGENT, status="failed",
                             summary=f"not applied: {exc.message}")
    if swap is not None:
        swap(policy)
    return store.outcome(request_id, agent=INTERLOCK_AGENT, status="succeeded",
                         summary=f"{os.path.basename(policy_file)} changed: policy "
                         f"{str(args.get('policy_hash'))[:12]} -> {policy.hash[:12]}")


# --- the file -----------------------------------------------------------------------------

def write_change(
    store: Store, *, path: str, base_hash: str, changes: Sequence[pe.Change],
    actor: str, data: dict[str, Any], expected_diff: str | None = None,
    request_id: str | None = None, served_hash: str | None = None,
) -> Policy:
    """Make `changes` on the policy file if it still hashes to `base_hash` (and, for a
    server, to the policy it runs: `served_hash`); the result must load, replaces the file
    atomically and is audited (`policy.changed`) before this returns. Nothing is written
    when any check fails."""
    if not changes:
        raise NotApplicable("there is no change to make")
    real = os.path.realpath(path)  # keep a symlinked policy a symlink
    name = os.path.basename(path)
    with _WRITING, _locked(os.path.dirname(real)):
        try:
            with open(real, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyUnwritable(f"cannot read the policy file `{path}`: {exc}") from None
        old = text_hash(text)
        if old != base_hash:
            raise PolicyChanged(
                f"`{path}` changed since this change was computed (it was {base_hash[:12]}, "
                f"it is {old[:12]} now): the change was not made")
        _check_served(path, old, served_hash)
        try:
            new = pe.edit(text, pe.edits(changes))
        except (PolicyError, ValueError, KeyError, TypeError):
            raise NotApplicable(f"the change cannot be made on `{path}` as it is") from None
        diff = pe.unified_diff(text, new, name)
        if expected_diff is not None and _body(diff) != _body(expected_diff):
            raise PolicyChanged(f"the change would now edit `{path}` differently from the "
                                "diff that was shown: it was not made")
        try:
            policy = load_policy_text(new, path)
        except PolicyError as exc:
            raise PolicyError([replace(d, file=f"{path} (after the change)")
                               for d in exc.diagnostics]) from None
        _replace(real, new, path)
        try:
            store.record(actor, CHANGED_EVENT, {
                "file": path, "old_hash": old, "new_hash": policy.hash, "diff": diff,
                "changes": [asdict(c) for c in changes], **data,
            }, request_id=request_id)
        except BaseException:
            # Unaudited, the change must not stand: put the old text back.
            with contextlib.suppress(PolicyUnwritable):
                _replace(real, text, path)
            raise
    return policy


def _check_served(path: str, file_hash: str, served_hash: str | None) -> None:
    # A server must not start deciding with edits nobody applied through interlock: the
    # file it rewrites has to be the policy it runs.
    if served_hash is not None and file_hash != served_hash:
        raise PolicyChanged(
            f"`{path}` ({file_hash[:12]}) is not the policy this server runs "
            f"({served_hash[:12]}): it was edited since the server loaded it. Restart the "
            "server with the file, or undo the edit, then apply the advice again")


def _body(diff: str) -> str:
    """A diff without its `---`/`+++` lines (they name the file, which may differ by host)."""
    return "".join(line for line in diff.splitlines(keepends=True)
                   if not line.startswith(("--- ", "+++ ")))


def _replace(real: str, text: str, shown: str) -> None:
    """Write `text` to a temporary file beside `real`, flush it to disk, then rename it over
    `real`: a reader sees the old file or the new one, never half of one."""
    directory, base = os.path.split(real)
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    except OSError as exc:
        raise PolicyUnwritable(f"cannot write beside the policy file `{shown}`: "
                               f"{exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PolicyUnwritable(f"cannot replace the policy file `{shown}`: "
                               f"{exc.strerror or exc}") from None
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """An exclusive `flock` on the policy file's directory, where the platform has one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the in-process lock only
        yield
        return
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock: best effort
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
