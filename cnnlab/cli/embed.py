"""PCA embedding of one layer's features for images seen under a range of transforms, coloured
by the transform's parameter (lecture 001, "Filter invariance and equivariance", after Aubry &
Russell 2015). --center image removes each image's own mean first (the paper's rotation
embedding: what the transform changes, with "style" taken out).

examples:
  cnnlab embed runs/lenet5-mnist --layer features.3 --transform rotate
  cnnlab embed runs/lenet5-mnist --layer classifier.1 --transform translate --center image
Writes embed-<layer>-<transform>.csv and .png into --out (default RUN/embed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.choices import CENTERING, TRANSFORMS
from cnnlab.cli.flags import add_data, add_output, data_request
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)

    parser.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    parser.add_argument("--layer", required=True, help="layer name, e.g. features.3")
    parser.add_argument("--transform", default="rotate", help=f"one of: {', '.join(TRANSFORMS)}")
    parser.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="magnitudes (default: +-size/4 px, 0.5-1.5, +-180 deg)")
    parser.add_argument("--steps", type=int, default=16, help="magnitudes per image (default 16)")
    parser.add_argument("--images", type=int, default=20, help="number of images (default 20)")
    parser.add_argument("--center", default="none", help=f"one of: {', '.join(CENTERING)}")
    add_output(parser, help="output directory (default RUN/embed)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.embed import embed_paths, embed_report
    from cnnlab.analysis.features import load_run_data
    from cnnlab.analysis.invariance import sweep_values

    if args.images < 1:
        raise ConfigError(f"--images must be >= 1, got {args.images}")
    data = load_run_data(args.run, data=data_request(args), limit=args.images)
    values = sweep_values(args.transform, args.range, args.steps, data.images.shape[-1])
    out = Path(args.out) if args.out else Path(args.run) / "embed"
    _, ratios = embed_report(data, args.layer, args.transform, values, out, center=args.center)
    print(f"PC1 and PC2 explain {100 * ratios[0]:.1f}% and {100 * ratios[1]:.1f}% of the variance")
    csv_path, png_path = embed_paths(out, args.layer, args.transform)
    print(f"wrote {csv_path} and {png_path}")
    return 0
