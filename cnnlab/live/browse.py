"""``cnnlab serve RUNS_DIR``: a folder of runs in the browser. A table of runs (model, data,
status, metrics from each run's ``run.json``, ``config.yaml`` and ``metrics.jsonl``), their curves
on shared axes, each run's ``report.html``, a "play" view of its snapshots (the filters at each
``snapshots/epoch-NNN.safetensors``; lecture 001, "strongest activation during training for
epochs 1, 2, 5, ..."), and "poke the network" with a run's checkpoint.

Everything is read through the runs folder with symlinks resolved: a run, report or snapshot
whose real path lies outside the folder is not shown and cannot be asked for.

Example:
    >>> browser = RunBrowser("runs")  # doctest: +SKIP
    >>> [row["id"] for row in browser.table()]  # doctest: +SKIP
    ['lenet5-mnist', 'resnet20-cifar10']
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

from cnnlab.errors import ConfigError, DataError
from cnnlab.live.server import HttpError, LiveServer
from cnnlab.live.snapshot import effective_kernels, kernels_uri
from cnnlab.runs.layout import CONFIG, INDEX, METRICS, SNAPSHOTS, checkpoint_name, is_run_dir
from cnnlab.runs.reader import read_index, read_metrics
from cnnlab.yamltext import load_yaml

MAX_DEPTH = 3  # runs may sit in sub-folders: runs/experiment/run
MAX_RUNS = 1000
MAX_CONFIG_BYTES = 1 << 20
PLAY_LAYERS = 4  # conv layers shown in the play view
REPORT = "report.html"
SNAPSHOT_NAME = re.compile(r"epoch-(\d+)\.safetensors")


def inside(root: Path, path: Path) -> Path | None:
    """``path`` with symlinks resolved when it lies in ``root`` (itself resolved), else None."""
    real = path.resolve()
    return real if real.is_relative_to(root) else None


def find_runs(root: Path, *, depth: int = MAX_DEPTH) -> list[str]:
    """Run folders under ``root`` (resolved), as ids relative to it (``a``, ``exp/b``), up to
    ``depth`` levels down; folders that resolve outside ``root`` are skipped."""
    found: list[str] = []
    seen: set[Path] = set()

    def visit(folder: Path, relative: str, level: int) -> None:
        try:
            entries = sorted(folder.iterdir()) if level <= depth else []
        except OSError:  # a folder we may not read: not ours to show
            return
        for entry in entries:
            real = inside(root, entry)
            if real is None or not real.is_dir() or real in seen or entry.name.startswith("."):
                continue
            seen.add(real)
            name = f"{relative}{entry.name}"
            if is_run_dir(real):
                found.append(name)
            elif len(found) < MAX_RUNS:
                visit(real, name + "/", level + 1)

    visit(root, "", 1)
    return found[:MAX_RUNS]


def read_config(run: Path) -> dict:
    """``config.yaml`` of a run ({} when missing, too large or not a mapping)."""
    path = run / CONFIG
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return {}
        values = load_yaml(path.read_text(errors="replace"), str(path))
    except (OSError, ConfigError):
        return {}
    return values if isinstance(values, dict) else {}


def snapshot_epochs(run: Path, root: Path) -> list[tuple[int, Path]]:
    """``[(epoch, file)]`` of the run's snapshots inside ``root``, by epoch."""
    folder = run / SNAPSHOTS
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = SNAPSHOT_NAME.fullmatch(path.name)
        real = inside(root, path) if match else None
        if real is not None and real.is_file():
            found.append((int(match.group(1)), real))
    return sorted(found)


def kept_inside(run: Path, root: Path, name: str) -> bool:
    """True unless the run's file ``name`` is a link that leads out of ``root``."""
    path = run / name
    return not path.exists() or inside(root, path) is not None


def run_row(run_id: str, run: Path, root: Path) -> dict:
    """One row of the runs table (a file that leads out of ``root`` counts as missing)."""
    config = read_config(run) if kept_inside(run, root, CONFIG) else {}
    index = read_index(run) if kept_inside(run, root, INDEX) else {}
    records = read_metrics(run) if kept_inside(run, root, METRICS) else []
    best = index.get("best") if isinstance(index.get("best"), dict) else {}
    test = index.get("test") if isinstance(index.get("test"), dict) else {}
    report = inside(root, run / REPORT)
    return {"id": run_id, "model": str(config.get("model", "")), "data": str(config.get("data", "")),
            "task": str(config.get("task", "classify")), "status": str(index.get("status", "?")),
            "epochs": records[-1]["epoch"] if records else 0,
            "best": {k: best[k] for k in ("metric", "value", "epoch") if k in best},
            "test": {k: v for k, v in test.items() if isinstance(v, (int, float))},
            "report": report is not None and report.is_file(),
            "snapshots": len(snapshot_epochs(run, root))}


def play_frames(run: Path, root: Path) -> dict:
    """The play view: each snapshot epoch, and for the first :data:`PLAY_LAYERS` conv layers
    their kernels at every snapshot (PNG data URIs, one per epoch)."""
    from torch import nn

    from cnnlab.runs import open_run

    snapshots = snapshot_epochs(run, root)
    layers: dict[str, list[str]] = {}
    for _, path in snapshots:
        model = open_run(path).model
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        for name, conv in convs[:PLAY_LAYERS]:
            layers.setdefault(name, []).append(kernels_uri(effective_kernels(conv)))
    hint = "" if snapshots else "no snapshots: train with --snapshot-epochs 1,2,5,10 to keep some"
    return {"epochs": [epoch for epoch, _ in snapshots], "hint": hint,
            "layers": [{"name": name, "frames": frames} for name, frames in layers.items()]}


class RunBrowser:
    """The runs folder the server shows; ``checkpoint`` (``best`` or ``last``) is poked."""

    def __init__(self, root: str | Path, *, checkpoint: str = "best", device: str = "cpu") -> None:
        if not Path(root).is_dir():
            raise DataError(f"no runs folder at {root}; give the folder your runs are in "
                            "(cnnlab train --out, default runs/)")
        self.root = Path(root).resolve()
        self.checkpoint, self.device = checkpoint, device
        self._probes: dict[tuple, Callable[[bytes], dict]] = {}
        self._plays: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    def resolve(self, run_id: str) -> Path:
        """The real folder of run ``run_id``; 404 unless it is a run inside the runs folder."""
        if "\x00" in run_id or "\\" in run_id or Path(run_id).is_absolute():
            raise HttpError(404, f"no run {run_id!r} here")
        real = inside(self.root, self.root / run_id)
        if real is None or not real.is_dir() or not is_run_dir(real):
            raise HttpError(404, f"no run {run_id!r} in {self.root}")
        return real

    def table(self) -> dict:
        return {"root": str(self.root),
                "runs": [run_row(i, self.resolve(i), self.root) for i in find_runs(self.root)]}

    def curves(self, run_id: str) -> dict:
        run = self.resolve(run_id)
        records = read_metrics(run) if kept_inside(run, self.root, METRICS) else []
        return {"run": run_id, "records": records}

    def checkpoint_file(self, run: Path) -> Path:
        """The run's ``checkpoint`` (else ``last``) file, resolved inside the runs folder."""
        for which in (self.checkpoint, "last"):
            real = inside(self.root, run / checkpoint_name(which))
            if real is not None and real.is_file():
                return real
        raise HttpError(404, f"{run.name} has no {self.checkpoint} or last checkpoint to poke")

    def report(self, run_id: str) -> bytes:
        path = inside(self.root, self.resolve(run_id) / REPORT)
        if path is None or not path.is_file():
            raise HttpError(404, f"run {run_id} has no report; make one with "
                                 f"cnnlab report {run_id}")
        return path.read_bytes()

    def play(self, run_id: str) -> dict:
        run = self.resolve(run_id)
        key = (run, tuple((e, p.stat().st_mtime_ns) for e, p in snapshot_epochs(run, self.root)))
        with self._lock:
            if key not in self._plays:
                self._plays[key] = play_frames(run, self.root)
            return self._plays[key]

    def probe(self, run_id: str, data: bytes) -> dict:
        """Poke run ``run_id``'s checkpoint with an uploaded image (:mod:`cnnlab.live.probe`)."""
        from cnnlab.live.probe import run_probe

        checkpoint = self.checkpoint_file(self.resolve(run_id))
        key = (checkpoint, checkpoint.stat().st_mtime_ns)
        with self._lock:
            if key not in self._probes:
                self._probes[key] = run_probe(checkpoint, device=self.device)
            probe = self._probes[key]
        return probe(data)


def serve_runs(runs_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765,
               checkpoint: str = "best", device: str = "cpu",
               announce: Callable[[str], None] = print) -> None:
    """Serve ``runs_dir`` until Ctrl-C (``cnnlab serve``); ``announce`` gets the address."""
    browser = RunBrowser(runs_dir, checkpoint=checkpoint, device=device)
    server = LiveServer(runs=browser, host=host, port=port, log=announce)
    announce(f"serving {browser.root} at {server.url}  (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        announce("warning: other machines can open this page (the token guards uploads, not "
                 "the view); the connection is not encrypted")
    try:
        server.serve_forever()
    finally:
        server.close()
