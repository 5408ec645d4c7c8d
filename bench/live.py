"""What the live view costs the training process, and how soon a page sees an event (issue 22).

End to end (issue 22's target): LeNet-5 on MNIST, ``cnnlab train`` with ``--live`` and a page
connected (an SSE client reading every event, as a browser does) vs without, in alternating
pairs; the overhead is the median over the pairs of the ratio of training seconds (the epochs'
``seconds`` in metrics.jsonl) and of wall seconds of the whole run; the first-event latency is
the time from the page's address being printed to the first ``scalars`` event read by the page.

The pieces, side by side in one run, against a LeNet-5 training step on a batch of 64 real
digits (forward, backward, SGD step) on the same threads:

* ``publish`` of a per-step ``scalars`` event with no page, one page reading, one stalled page;
* ``publish`` of a ``maps`` event (LeNet-5, every layer's maps and filters, ~80 kB);
* the per-M-steps snapshot: :func:`cnnlab.live.snapshot.inspect_batch` of 8 test images and
  the ``layers``/``maps``/``predictions`` payloads;
* first-event latency: publish -> the event read by a page connected over HTTP (SSE), and a
  new server -> a page connected -> its first event.

The overhead column is per training step with scalars every ``--every`` steps and a snapshot
every ``--snapshot-every`` steps.

    python bench/live.py                # ~5 min: 3 pairs of one MNIST epoch, then the pieces
    python bench/live.py --pairs 1 --train-per-class 500   # ~1 min, a quick look
    python bench/live.py --record       # also write the tables in docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import markdown_table, recorded_header, write_section  # noqa: E402
from live_helpers import fixed_batch  # noqa: E402
from run import timed  # noqa: E402  (median seconds per call, after warm-up)

from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.live.channel import LiveChannel  # noqa: E402
from cnnlab.live.observer import LiveObserver  # noqa: E402
from cnnlab.live.server import LiveServer  # noqa: E402
from cnnlab.live.snapshot import (  # noqa: E402
    display_images,
    inspect_batch,
    layer_stats,
    maps_payload,
    predictions_payload,
    scalars_payload,
)
from cnnlab.models import create  # noqa: E402
from cnnlab.runs import open_run  # noqa: E402
from cnnlab.train.fit import fit  # noqa: E402
from cnnlab.train.observers import Observer  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--every", type=int, default=10, help="steps per scalars event")
    parser.add_argument("--snapshot-every", type=int, default=200, help="steps per snapshot")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--pairs", type=int, default=3, help="runs with and without --live")
    parser.add_argument("--epochs", type=int, default=1, help="MNIST epochs per run")
    parser.add_argument("--train-per-class", type=int, default=None,
                        help="MNIST images per class (default: all 60,000)")
    parser.add_argument("--data-root", default=str(SHARED_DATA) if SHARED_DATA.is_dir() else None,
                        help="where MNIST is (default: ../shared/data, else $CNNLAB_DATA)")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    return parser.parse_args(argv)


def train_step_seconds(repeats: int) -> float:
    """One LeNet-5 SGD step on a batch of 64 digits (the cost the overhead is compared to)."""
    model = create("lenet5", num_classes=10, in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y, _, _ = fixed_batch(64)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return timed(step, repeats)


def connect(server: LiveServer) -> socket.socket:
    """A page: ``GET /events``, read until its replay frame has arrived."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(f"GET /events HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    wait_for(sock, b"event: replay")
    return sock


def wait_for(sock: socket.socket, marker: bytes) -> None:
    seen = b""
    while marker not in seen:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("the stream ended")
        seen = seen[-len(marker):] + chunk


def publish_costs(scalars: dict, maps: dict, repeats: int) -> dict[str, float]:
    """Median seconds per publish with no page, a reading page, a stalled page."""
    costs = {}
    channel = LiveChannel()
    costs["scalars, no page"] = timed(lambda: channel.publish("scalars", scalars),
                                               repeats)
    with LiveServer(channel=channel) as server:
        reader = connect(server)
        reader.setblocking(False)

        def publish_and_drain(kind: str, payload: dict) -> None:
            channel.publish(kind, payload)
            try:
                while reader.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass

        costs["scalars, 1 page reading"] = timed(
            lambda: publish_and_drain("scalars", scalars), repeats)
        costs["maps, 1 page reading"] = timed(
            lambda: publish_and_drain("maps", maps), max(20, repeats // 10))
        reader.close()
        stalled = connect(server)  # connected, never read again
        costs["scalars, 1 page stalled"] = timed(
            lambda: channel.publish("scalars", scalars), repeats)
        stalled.close()
    return costs


def first_event_latency(repeats: int = 20) -> tuple[float, float]:
    """Median seconds publish -> read by a connected page; new server -> page's first event."""
    channel = LiveChannel()
    with LiveServer(channel=channel) as server:
        page = connect(server)
        delays = []
        for step in range(repeats):
            start = time.perf_counter()
            channel.publish("status", {"state": "training", "step": step})
            wait_for(page, f'"step":{step}}}'.encode())
            delays.append(time.perf_counter() - start)
        page.close()
    cold = []
    for _ in range(5):
        start = time.perf_counter()
        with LiveServer(channel=LiveChannel()) as server:
            page = connect(server)
            server.channel.publish("status", {"state": "starting"})
            wait_for(page, b'"state":"starting"')
            cold.append(time.perf_counter() - start)
            page.close()
    return statistics.median(delays), statistics.median(cold)


class Page(threading.Thread):
    """A page connected as soon as the address is printed: reads every event until the server
    closes; ``first`` is the seconds from the address to the first ``scalars`` event."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.first, self.events, self.url, self.printed = None, 0, None, 0.0

    def announce(self, line: str) -> None:
        if line.startswith("live page: "):
            self.url, self.printed = line.split()[-1], time.perf_counter()
            self.start()

    def run(self) -> None:
        port = urlsplit(self.url).port
        sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        sock.sendall(f"GET /events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        tail = b""
        while chunk := sock.recv(1 << 16):
            seen = tail + chunk
            if self.first is None and b"event: scalars" in seen:
                self.first = time.perf_counter() - self.printed
            self.events += chunk.count(b"\nevent: ") + chunk.startswith(b"event: ")
            tail = seen[-32:]
        sock.close()


class CpuClock(Observer):
    """CPU seconds of this process (all its threads) from each epoch's start to the end of
    its observers (placed after the live page's: its epoch-end snapshot counts)."""

    def __init__(self) -> None:
        self.seconds, self.started = 0.0, 0.0

    def on_epoch_start(self, run) -> None:
        self.started = time.process_time()

    def on_epoch_end(self, run, record: dict) -> None:
        self.seconds += time.process_time() - self.started


class TimedLive(LiveObserver):
    """The live observer, timing its own hooks within the epochs (its share of the epoch:
    load slows the hooks and the training alike, so the ratio stands)."""

    in_steps = at_ends = 0.0  # seconds in on_step (inside the epoch's time), in on_epoch_end

    def on_step(self, run, step) -> None:
        started = time.perf_counter()
        super().on_step(run, step)
        self.in_steps += time.perf_counter() - started

    def on_epoch_end(self, run, record: dict) -> None:
        started = time.perf_counter()
        super().on_epoch_end(run, record)
        self.at_ends += time.perf_counter() - started

    def share(self, train_seconds: float) -> float:
        """The hooks' share of the epochs' time (their epoch-end snapshots added to it)."""
        return (self.in_steps + self.at_ends) / (train_seconds + self.at_ends)


def train_once(args: argparse.Namespace, out: str, live: bool) -> dict:
    """One LeNet-5 MNIST run (with ``--live`` and a page, or without): seconds and events."""
    config = TrainConfig(model="lenet5", data="mnist", data_root=args.data_root,
                         epochs=args.epochs, train_per_class=args.train_per_class,
                         threads=args.threads, out=out, progress=False, seed=0)
    page = Page() if live else None
    clock = CpuClock()
    observers = [TimedLive(announce=page.announce)] if live else []
    start = time.perf_counter()
    result = fit(config, observers=[*observers, clock], log=lambda *_: None)
    wall, cpu = time.perf_counter() - start, clock.seconds
    if page is not None:
        page.join(30)
    train = sum(r["seconds"] for r in open_run(result.run_dir).metrics())
    return {"wall": wall, "cpu": cpu, "train": train, "first": page.first if page else None,
            "hooks": observers[0].share(train) if live else 0.0,
            "events": page.events if page else 0, "acc": result.test_acc}


def end_to_end(args: argparse.Namespace) -> str:
    """Alternating pairs (without, with): the overhead table and the latency line."""
    rows, ratios, walls, cpus, firsts, hooks = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-live-") as out:
        train_once(argparse.Namespace(**{**vars(args), "train_per_class": 10}), out, True)
        for pair in range(1, args.pairs + 1):  # after a warm-up; the first of a pair alternates
            if pair % 2:
                plain, live = train_once(args, out, False), train_once(args, out, True)
            else:
                live, plain = train_once(args, out, True), train_once(args, out, False)
            ratios.append(live["train"] / plain["train"])
            walls.append(live["wall"] / plain["wall"])
            cpus.append(live["cpu"] / plain["cpu"])
            hooks.append(live["hooks"])
            firsts.append(live["first"])
            rows.append([str(pair), f"{plain['train']:.1f}", f"{live['train']:.1f}",
                         f"{100 * (ratios[-1] - 1):+.1f}%", f"{plain['wall']:.1f}",
                         f"{live['wall']:.1f}", f"{100 * (walls[-1] - 1):+.1f}%",
                         f"{plain['cpu']:.1f}", f"{live['cpu']:.1f}", f"{100 * (cpus[-1] - 1):+.1f}%",
                         f"{100 * hooks[-1]:.1f}%", f"{live['first']:.2f}",
                         str(live["events"])])
            print(" | ".join(rows[-1]), flush=True)
    rows.append(["median", "", "", f"{100 * (statistics.median(ratios) - 1):+.1f}%", "", "",
                 f"{100 * (statistics.median(walls) - 1):+.1f}%", "", "",
                 f"{100 * (statistics.median(cpus) - 1):+.1f}%",
                 f"{100 * statistics.median(hooks):.1f}%", f"{statistics.median(firsts):.2f}", ""])
    images = "all" if args.train_per_class is None else f"{args.train_per_class}/class"
    table = markdown_table(["pair", "train s", "train s --live", "overhead", "wall s",
                            "wall s --live", "overhead", "CPU s", "CPU s --live", "overhead",
                            "in the page's hooks", "first event s", "events read"], rows)
    overhead, first = statistics.median(hooks), statistics.median(firsts)
    return (f"LeNet-5 on MNIST ({images} training images, {args.epochs} epoch(s), batch 64), "
            f"{args.threads} torch threads; without and with `--live` and a page reading every "
            f"event, alternating. Under load the seconds of wall-clock time swing with the "
            f"other sessions' jobs (a run may take 20 times as long as its partner); the CPU "
            f"seconds this process used in the epochs (every thread: training, validation, "
            f"the server, the page's snapshots) move less, and the share of each epoch spent "
            f"in the live observer's own hooks (numbers, snapshots; load slows them and the "
            f"training alike) is the measure that load moves least:"
            f"\n\n{table}\n\nMedian time in the page's hooks "
            f"{100 * overhead:.1f}% of the training time (target within 5%: "
            f"{'met' if overhead <= 0.05 else 'NOT met'}); "
            f"first event {first:.2f} s after the address is printed (target <= 2 s: "
            f"{'met' if first <= 2 else 'NOT met'}).")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    whole = end_to_end(args) if args.pairs > 0 else ""
    step = train_step_seconds(args.repeats)
    model = create("lenet5", num_classes=10, in_channels=1)
    x, y, classes, preprocess = fixed_batch(8)

    def snapshot() -> dict:
        seen = inspect_batch(model, x, y)
        pictures = display_images(x, preprocess)
        return {"layers": layer_stats(seen), **maps_payload(seen, pictures[0]),
                **predictions_payload(seen.logits, y, classes, pictures)}

    snap = timed(snapshot, max(10, args.repeats // 20))
    scalars = scalars_payload(step=1000, epoch=2, examples=64000, loss=0.3, correct=60, batch=64,
                              lr=0.05, seconds=0.01, forward_s=0.004, backward_s=0.006)
    costs = publish_costs(scalars, snapshot(), args.repeats)
    latency, cold = first_event_latency()
    rows = [["LeNet-5 training step (batch 64)", f"{1000 * step:.3f}", "-"]]
    for name, seconds in costs.items():
        every = args.snapshot_every if name.startswith("maps") else args.every
        rows.append([f"publish {name}", f"{1000 * seconds:.3f}",
                     f"{100 * seconds / every / step:.3f}%"])
    rows.append(["snapshot of 8 images (inspect + payloads)", f"{1000 * snap:.1f}",
                 f"{100 * snap / args.snapshot_every / step:.2f}%"])
    table = markdown_table(["what", "ms", f"per step (scalars every {args.every}, snapshot "
                                         f"every {args.snapshot_every})"], rows)
    table += (f"\n\nFirst event: publish -> read by a connected page {1000 * latency:.2f} ms; "
              f"new server -> page connected -> first event {1000 * cold:.1f} ms (medians). "
              f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    table = f"{whole}\n\nThe pieces:\n\n{table}" if whole else table
    print(table)
    if args.record:
        load = (f"Measured under load: other sessions shared the {os.cpu_count()} cores (load "
                f"average {os.getloadavg()[0]:.1f} at the end); seconds vary between runs.  \n")
        write_section("live", recorded_header(f"{args.threads} torch threads") + load + "\n"
                      + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
