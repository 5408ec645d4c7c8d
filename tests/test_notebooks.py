"""The lessons as notebooks (issue 21): one jupytext ``.py`` notebook per lecture in
``notebooks/``, converted to ``.ipynb`` and executed cell by cell with nbmake, in a fresh kernel,
each within ``TIMEOUT`` seconds. A cell that raises fails the test with its traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the test extra installs jupytext and nbmake")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("lecture_*.py"))
TIMEOUT = 60  # seconds per cell (a notebook takes about 30 s on 2 shared cores)
LECTURES = ["000", "001", "002", "003", "004"]


def test_there_is_one_notebook_per_lecture():
    assert [p.name.split("_")[1] for p in NOTEBOOKS] == LECTURES
    for path in NOTEBOOKS:
        notebook = jupytext.read(path)
        assert notebook.cells[0].cell_type == "markdown"
        assert notebook.cells[0].source.startswith(f"# Lecture {path.name.split('_')[1]}")
        code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        assert "run_example(" in code  # the lecture catalogue's worked examples


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_nbmake(path, tmp_path):
    pytest.importorskip("nbmake")
    notebook = tmp_path / f"{path.stem}.ipynb"
    jupytext.write(jupytext.read(path), notebook)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--nbmake", f"--nbmake-timeout={TIMEOUT}", str(notebook)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT + 120,
                            env={"OMP_NUM_THREADS": "2",
                                 "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    print(f"{path.name}: {seconds:.1f} s")
