"""How large ``cnnlab report`` is and how fast Chromium opens it (issue 21: under 1 MB for the
CIFAR-10 ResNet-20 report).

Without ``--run`` it first trains a small ResNet-20 on CIFAR-10 (``--per-class`` training images
per class, ``--epochs`` epochs, a snapshot each epoch so the evolution section has pictures);
the report's size does not depend on how well the network learned, only on the pictures. Then
it writes the report (timed), lists each section's bytes, and opens the page ``--repeats``
times in headless Chromium: the load time is the page's own ``loadEventEnd`` (navigation
start to the end of the load event: HTML parsed, every embedded image decoded), and the wall
time of the whole browser process besides.

    python bench/report.py [--run RUN] [--repeats 5] [--record]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import markdown_table, recorded_header, write_section

BUDGET = 1_000_000  # bytes
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PROBE = """<script>window.addEventListener("load", () => setTimeout(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const out = document.createElement("pre"); out.id = "bench";
  out.textContent = JSON.stringify({load: nav.loadEventEnd, images: document.images.length});
  document.body.appendChild(out); }, 0));</script>"""


def train_run(folder: Path, data_root: str | None, per_class: int, epochs: int) -> Path:
    from cnnlab.cli.main import main

    argv = ["train", "--model", "resnet20", "--data", "cifar10", "--train-per-class",
            str(per_class), "--epochs", str(epochs), "--augment", "crop:4,flip",
            "--snapshot-epochs", ",".join(str(e) for e in range(1, epochs + 1)),
            "--out", str(folder), "--name", "resnet20-cifar10", "--no-progress", "--threads", "2"]
    if data_root:
        argv += ["--data-root", data_root]
    assert main(argv) == 0
    return folder / "resnet20-cifar10"


def section_sizes(page: str) -> list[list[object]]:
    """Bytes of each ``<section>`` and how many images it embeds."""
    return [[key, f"{len(body.encode()):,}", body.count("<img ")]
            for key, body in re.findall(r'<section id="([^"]+)">(.*?)</section>', page, re.S)]


def load_times(page: Path, repeats: int) -> tuple[list[float], list[float], int]:
    """``loadEventEnd`` in ms and the browser process's wall time in s, per opening."""
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("needs a headless Chromium (Debian's chromium)")
    probe = page.with_name("bench-" + page.name)
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    loads, walls, images = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                 "--dump-dom", "--virtual-time-budget=10000",
                                 probe.resolve().as_uri()], capture_output=True, text=True,
                                timeout=300)
        walls.append(time.perf_counter() - start)
        found = json.loads(re.search(r'<pre id="bench">(.*?)</pre>', result.stdout,
                                     re.S).group(1).replace("&quot;", '"'))
        loads.append(found["load"])
        images = found["images"]
    return loads, walls, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run (default: train a small ResNet-20)")
    parser.add_argument("--data-root", default=None, help="default: $CNNLAB_DATA")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=5000, help="report --limit")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", metavar="HTML",
                        help="another report of the same run (e.g. written by an older cnnlab) "
                             "to open the same way, for comparison")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args()
    import torch

    from cnnlab.viz.report import run_report

    torch.set_num_threads(2)
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-bench-report-"))
    run = Path(args.run) if args.run else train_run(folder, args.data_root, args.per_class,
                                                    args.epochs)
    start = time.perf_counter()
    page = run_report(run, out=folder / "report.html", limit=args.limit)
    written = time.perf_counter() - start
    size = page.stat().st_size
    loads, walls, images = load_times(page, args.repeats)
    rows = [["report size", f"{size:,} bytes ({size / 1e6:.2f} MB)",
             "met" if size < BUDGET else "NOT met"],
            ["images embedded", images, ""],
            ["written by `cnnlab report` in", f"{written:.0f} s", ""],
            ["Chromium loadEventEnd, median", f"{statistics.median(loads):.0f} ms "
             f"(min {min(loads):.0f}, max {max(loads):.0f})", ""],
            ["headless Chromium process, median", f"{statistics.median(walls):.2f} s", ""]]
    if args.before:
        before = Path(args.before)
        old_loads, old_walls, old_images = load_times(before, args.repeats)
        rows.append([f"before: `{before.name}`", f"{before.stat().st_size:,} bytes, "
                     f"{old_images} images, loadEventEnd median "
                     f"{statistics.median(old_loads):.0f} ms, process "
                     f"{statistics.median(old_walls):.2f} s", ""])
    table = markdown_table(["what", "value", "budget (1 MB)"], rows)
    sections = markdown_table(["section", "bytes", "images"], section_sizes(page.read_text()))
    print(table + "\n\n" + sections)
    if args.record:
        write_section("report", "## Report size and load time (issue 21)\n\n"
                      + recorded_header() + f"Run: `{run}`"
                      + ("" if args.run else f" (ResNet-20, {args.per_class} CIFAR-10 training "
                         f"images per class, {args.epochs} epochs)")
                      + f"; {args.repeats} openings. **Measured under load** (2 cores shared "
                      "by several sessions).\n\n"
                      + table + "\n\n" + sections)


if __name__ == "__main__":
    main()
