"""Fixtures for the policy engine tests: the SPEC §2 example and a policy builder."""

from __future__ import annotations

import contextlib
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from interlock.policy import Policy, load_policy, load_policy_text

# Hypothesis writes a failing example as a patch with libcst, whose import warns through
# mypy_extensions; importing it here, quietly, keeps a real failure a failure and not an
# INTERNALERROR under `filterwarnings = error`.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

HERE = Path(__file__).parent
SPEC_EXAMPLE = HERE / "spec_example.yaml"


def build(text: str, file: str = "policy.yaml") -> Policy:
    """Compile dedented policy text (it must load)."""
    return load_policy_text(textwrap.dedent(text), file)


@pytest.fixture(scope="session")
def spec_policy() -> Policy:
    """The SPEC §2 example policy, verbatim."""
    return load_policy(SPEC_EXAMPLE)


@pytest.fixture
def policy_from() -> Callable[..., Policy]:
    """Compile a policy from (dedented) text."""
    return build
