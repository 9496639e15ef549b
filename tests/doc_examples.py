"""Runs a docs page's one runnable example, so every page's example is kept working."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def run_doc_example(doc: Path, tmp_path: Path, *, timeout: float = 60) -> str:
    """Run the page's single ```python block in a fresh process; return what it printed."""
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{doc.name} should hold exactly one runnable python block"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout
