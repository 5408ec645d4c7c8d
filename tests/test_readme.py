"""The README's Python snippet runs as written (issue 21, stumble 1: it used ``load_model``'s
``(model, meta)`` pair as a model)."""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_snippet_runs_and_gives_a_model(tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert "epochs=10" in code
    monkeypatch.chdir(tmp_path)  # its run goes to ./runs
    namespace: dict = {}
    exec(code.replace("epochs=10", "epochs=1, progress=False"), namespace)  # noqa: S102
    assert isinstance(namespace["model"], nn.Module) and not namespace["model"].training
    out = capsys.readouterr().out
    assert "['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] [32, 32]" in out
    assert "LeNet on a 1x32x32 input" in out and "\nfeatures.0    Conv2d" in out  # the table
