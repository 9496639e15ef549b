"""docs/sdk.md: its runnable example runs, and prints what the page says it does."""

from __future__ import annotations

from pathlib import Path

from tests.doc_examples import run_doc_example

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def test_the_runnable_example_runs(tmp_path: Path) -> None:
    out = run_doc_example(DOC, tmp_path, timeout=60)
    assert "sent 40 EUR to acme" in out
    assert "review: Pay acme 12000 EUR" in out and "rule large-payments" in out
    assert "sent 900 EUR to acme" in out
    assert "interlock denied `send_payment`" in out and "rule no-crypto" in out


def test_every_public_name_is_documented() -> None:
    import interlock

    text = DOC.read_text()
    for name in interlock.__all__:
        if name not in ("__version__", "Signal", "Ticket", "ReviewRequest"):
            assert f"`{name}" in text or name in text, name
