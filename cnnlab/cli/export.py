"""Export a run's model to ONNX or TorchScript and check the outputs match PyTorch's.

The file takes normalised float32 images (B, C, H, W) and returns logits; FILE.json beside it
holds the class names and preprocessing (mean/std, size). ONNX parity is checked with
onnxruntime when installed (pip install onnx onnxruntime).

examples:
  cnnlab export runs/lenet5-mnist                        # -> runs/lenet5-mnist/best.onnx
  cnnlab export runs/lenet5-mnist --format torchscript --out lenet5.pt
"""

from __future__ import annotations

import argparse

from cnnlab.choices import EXPORT_FORMATS
from cnnlab.cli.flags import add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    parser.add_argument("--format", default="onnx", help=f"one of: {', '.join(EXPORT_FORMATS)}")
    add_output(parser, metavar="FILE", help="output file (default: beside the "
                        "checkpoint, e.g. RUN/best.onnx)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted |exported - PyTorch| logit difference")


def run(args: argparse.Namespace) -> int:
    from cnnlab.export import export_model

    result = export_model(args.run, format=args.format, out=args.out, which=args.checkpoint,
                          tolerance=args.tolerance)
    diff = "" if result.max_abs_diff is None else f"max |diff| {result.max_abs_diff:.2e}, "
    print(f"wrote {result.path} ({result.format}; {diff}checked with {result.checked_with})")
    print(f"wrote {result.sidecar} (classes, input shape, preprocessing)")
    return 0
