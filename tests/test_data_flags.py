"""Every command that reads a data set takes the same data flags (issue 21, stumble 3: several
took ``--data`` but not the ``--data-root``/``--download`` their own errors ask for)."""

from __future__ import annotations

import pytest

from cnnlab.cli.main import COMMANDS, build_parser, main


def options(command: str) -> set[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {flag for action in sub._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_with_data_has_all_the_data_flags(command):
    flags = options(command)
    if "--data" in flags:
        assert {"--data-root", "--download"} <= flags, command


def test_the_commands_the_issue_names_take_data(tmp_path):
    for command in ("probe", "invariance", "embed", "shift-test", "sliding", "gradients",
                    "finetune", "stats", "evaluate"):
        assert "--download" in options(command), command


def test_stats_reads_through_the_data_flags(tmp_path, capsys, monkeypatch):
    from cnnlab.data.request import DataRequest

    asked, load = [], DataRequest.load
    monkeypatch.setattr(DataRequest, "load", lambda self, split="train": (
        asked.append(self), load(self, split))[1])
    assert main(["stats", "--data", "digits", "--data-root", str(tmp_path), "--download",
                 "--samples", "50", "--max-shift", "2", "--out", str(tmp_path)]) == 0
    assert "digits: correlation vs shift, 50 train samples" in capsys.readouterr().out
    assert asked == [DataRequest("digits", str(tmp_path), True, False, None)]


def test_a_colour_to_grey_conversion_is_announced_once_as_one_line(monkeypatch):
    """Issue 21, item 10: RGB -> grey was silent."""
    import warnings

    import torch

    import cnnlab.cli.datasets
    from cnnlab.data.pipeline import match_channels

    rgb = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    shown = []

    def convert(args) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # Python's own: a repeated warning shows once
            for _ in range(3):
                assert match_channels(rgb, 1, source="my-photos").shape == (2, 1, 4, 4)
        shown.extend(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                     for w in caught)
        return 0

    monkeypatch.setattr(cnnlab.cli.datasets, "run", convert)
    assert main(["datasets"]) == 0
    assert shown == ["cnnlab datasets: warning: my-photos: 3-channel images are converted to "
                     "1 channel (luma 0.299 R + 0.587 G + 0.114 B)\n"]
