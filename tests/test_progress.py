"""Progress of long steps (issue 21, stumble 9): nothing for quick steps, plain lines without
``\\r`` at most one per 10% or 30 s where stderr is not a terminal, one images/s figure."""

from __future__ import annotations

import io
import sys

import cnnlab.progress
from cnnlab.config import TrainConfig
from cnnlab.progress import Progress
from cnnlab.train.fit import fit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(total, seconds_per_step, steps, desc="probe"):
    clock, stream = Clock(), io.StringIO()
    with Progress(total, desc, unit="image", stream=stream, clock=clock) as progress:
        for _ in range(steps):
            clock.now += seconds_per_step
            progress.update()
    return stream.getvalue()


def test_a_quick_step_prints_nothing():
    assert run_steps(100, 0.01, 100) == ""  # 1 s in all


def test_a_log_gets_a_line_per_tenth_and_no_carriage_return():
    text = run_steps(100, 0.1, 100)  # 10 s: first line after 2 s, then every 10%
    lines = text.splitlines()
    assert "\r" not in text
    assert [line.split(":")[1].split("/")[0].strip() for line in lines[:-1]] == [
        str(n) for n in range(20, 101, 10)]
    assert lines[0] == "probe: 20/100 images (20%), 10 images/s"
    assert lines[-1] == "probe: done, 100 images in 10.0 s (10 images/s)"
    assert all(line.count("/s") == 1 for line in lines)  # one speed figure


def test_a_slow_step_of_unknown_length_writes_at_most_every_30_seconds():
    lines = run_steps(None, 7.0, 20).splitlines()  # 140 s, total unknown
    assert len(lines) == 1 + 3 + 1  # at 7 s, at 42, 77, 112 s (>= 30 s apart), the closing line
    assert lines[0] == "probe: 1 images, 0.14 images/s"


def test_the_training_bar_shows_one_images_per_second_figure(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    fit(TrainConfig(epochs=1, out=str(tmp_path), threads=1, batch_size=16), log=lambda *_: None)
    frames = [frame for frame in screen.getvalue().split("\r") if "epoch 1/1" in frame]
    assert frames and all(frame.count("/s") == 1 and "ips=" not in frame for frame in frames)
    assert any("image/s" in frame and "loss=" in frame for frame in frames)


def test_the_epochs_and_the_final_test_pass_report_progress_in_a_log(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(cnnlab.progress, "DELAY_S", 0.0)  # as if each step took long
    fit(TrainConfig(epochs=1, out=str(tmp_path), threads=1), log=lambda *_: None)
    err = capsys.readouterr().err
    assert "testing the best checkpoint: done, 360 images in" in err and "\r" not in err
    epoch = [line for line in err.splitlines() if line.startswith("epoch 1/1: ")]
    assert epoch[-1].startswith("epoch 1/1: done, 1293 images in")  # digits minus validation
    assert 2 <= len(epoch) <= 12  # at most one line per 10%, and the closing one
