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


def test_every_flag_in_the_readme_exists():
    """Issue 21, item 10 (``--top`` where the flag is ``--top-k``): each ``cnnlab COMMAND
    --flag`` of the README is a flag of that command."""
    from cnnlab.cli.main import COMMANDS, build_parser

    checked = 0
    for line in README.read_text().splitlines():
        words = line.split("#")[0].split()
        if len(words) < 2 or words[0] != "cnnlab" or words[1] not in COMMANDS:
            continue
        parser = build_parser(words[1])
        sub = next(a for a in parser._actions if a.dest == "command").choices[words[1]]
        known = {flag for action in sub._actions for flag in action.option_strings}
        for word in words[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{line}: {word}"
                checked += 1
    assert checked >= 15
