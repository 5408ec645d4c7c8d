"""Browse a folder of finished runs in the browser: a table of runs, their curves on shared
axes, each run's report, a "play" view of its snapshots, and "poke the network" (draw a digit or
upload an image and see every layer's maps, the probabilities and a saliency map).

examples:
  cnnlab serve                       # runs/ at http://127.0.0.1:8765/#token=...
  cnnlab serve ~/experiments --port 9000 --checkpoint last
Only this machine can open the page unless --host names another address of it; uploads need the
token printed in the address. Ctrl-C stops the server. See docs/LIVE.md.
"""

from __future__ import annotations

import argparse

from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="?", default="runs", metavar="RUNS_DIR",
                        help="folder of run directories (default runs/)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="checkpoint the page pokes (default best)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from cnnlab.live.browse import serve_runs

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port number (0..65535)")
    serve_runs(args.runs, host=args.host, port=args.port, checkpoint=args.checkpoint,
               device=args.device)
    return 0
