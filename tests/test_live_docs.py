"""docs/LIVE.md's "drive the page from your own training loop" example runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "LIVE.md"


@pytest.mark.slow
def test_the_own_loop_example_runs(tmp_path):
    section = DOC.read_text().split("## Drive the page from your own training loop")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "own_loop.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script), "1"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.fullmatch(r"open http://127\.0\.0\.1:\d+/#token=[\w-]{43}\n", result.stdout)
