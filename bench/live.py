"""What the live view costs the training process, and how soon a page sees an event (issue 22).

A skeleton until the training loop's observer exists: it measures the pieces the observer will
call, side by side in one run, against a LeNet-5 training step on a batch of 64 real digits
(forward, backward, SGD step) on the same threads:

* ``publish`` of a per-step ``scalars`` event with no page, one page reading, one stalled page;
* ``publish`` of a ``maps`` event (LeNet-5, every layer's maps and filters, ~80 kB);
* the per-M-steps snapshot: :func:`cnnlab.live.snapshot.inspect_batch` of 8 test images and
  the ``layers``/``maps``/``predictions`` payloads;
* first-event latency: publish -> the event read by a page connected over HTTP (SSE), and a
  new server -> a page connected -> its first event.

The overhead column is per training step with scalars every ``--every`` steps and a snapshot
every ``--snapshot-every`` steps. Issue 22's target (LeNet-5 on MNIST with ``--live`` and a page
connected vs without: within 5%, first event <= 2 s) is measured end to end once the observer
is in the loop.

    python bench/live.py                # ~30 s
    python bench/live.py --record       # also write the table in docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import markdown_table, recorded_header, write_section  # noqa: E402
from live_helpers import fixed_batch  # noqa: E402
from run import timed  # noqa: E402  (median seconds per call, after warm-up)

from cnnlab.live.channel import LiveChannel  # noqa: E402
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--every", type=int, default=10, help="steps per scalars event")
    parser.add_argument("--snapshot-every", type=int, default=200, help="steps per snapshot")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
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
    print(table)
    if args.record:
        write_section("live", recorded_header(f"{args.threads} torch threads") + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
