"""docs/EXPLAIN.md runs as written: every ``$ cnnlab ...`` (and ``$ python -c``) example is run,
and the output lines the page shows must appear in that order ("..." marks lines left out)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from cnnlab.cli.main import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "EXPLAIN.md"
SKIP = ("models --plot",)  # draws the zoo; tests/test_complexity.py runs it on a subset


def examples() -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for every ``$`` line of the page's text blocks."""
    found = []
    for block in re.findall(r"```text\n(.*?)```", PAGE.read_text(), flags=re.S):
        command, shown = None, []
        for line in block.splitlines() + ["$ end"]:
            if line.startswith("$ "):
                if command is not None:
                    found.append((command, shown))
                command, shown = line[2:], []
            elif command is not None:
                shown.append(line)
    return [(c, s) for c, s in found if not any(k in c for k in SKIP)]


def run(command: str, tmp_path: Path) -> tuple[int, str]:
    command = command.replace('; echo "exit code $?"', "")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        if command.startswith("python -c "):
            exec(shlex.split(command)[2], {})  # noqa: S102 - the page's own example
            code = 0
        else:
            code = main(shlex.split(command)[1:])
    return code, out.getvalue()


@pytest.mark.parametrize("command, shown", examples(), ids=lambda v: str(v)[:60])
def test_page_example_runs_as_shown(command: str, shown: list[str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run(command, tmp_path)
    lines = [line.rstrip() for line in output.splitlines()]
    expected_code = next((int(s.split()[-1]) for s in shown if s.startswith("exit code")), 0)
    assert code == expected_code, output
    at = 0
    for want in (s.rstrip() for s in shown if s.strip() not in ("...", "")
                 and not s.startswith("exit code")):
        while at < len(lines) and lines[at] != want:
            at += 1
        assert at < len(lines), f"{command!r}: line not in the output, or out of order: {want!r}"
        at += 1


def test_the_page_has_examples() -> None:
    commands = [c for c, _ in examples()]
    assert len(commands) >= 20 and any("lecture:x" in c for c in commands)
    assert any("lecture:step_edge" in c for c in commands)
