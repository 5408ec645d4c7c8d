"""Look inside a trained network: filters, feature maps, top patches, saliency, class models,
feature evolution, errors, curves and the confusion matrix, written as PNG files.

kinds (and the --task of the runs each one serves):
  filters      first conv layer's kernels (--layer conv2: per input channel)
               [classify, multilabel, segment, detect, instance]
  maps         feature maps of every conv layer (or --layer) for a test image or --image
               [classify, multilabel, segment]
  top-patches  for --units of --layer (default: last conv), the 9 most exciting data patches
               [classify, multilabel, segment]
  saliency     input-gradient saliency and Grad-CAM (last conv) for 8 test images or --image;
               detection runs: of one detected box (--box K, best score first)
               [classify, multilabel, detect, instance]
  gradcam      Grad-CAM of one detected box (--box K) on the fused stride-4 map
               [detect, instance]
  class-model  the image maximising each class score (or --class), regularised ascent
               [classify, multilabel]
  evolution    strongest patch per unit at each snapshot (train with --snapshot-epochs 1,2,5)
               [classify, multilabel, segment]
  errors       misclassified test images: true class, prediction and 2nd guess with their
               probabilities; multilabel: the scenes whose label set is wrong
               [classify, multilabel]
  top-losses   the --count (30) images with the largest loss, and the most confused pairs
               [classify]
  curves       loss, the task's metrics (accuracy, mAP, mIoU) and learning rate, per step
               [classify, multilabel, segment, detect, instance]
  confusion    confusion matrix of the test split (--normalize: also per true class);
               segment: of pixels [classify, segment]
  segmentation image / truth / predicted mask for --count test images [segment]

examples:
  cnnlab visualize maps runs/lenet5-mnist
  cnnlab visualize top-patches runs/lenet5-mnist --layer conv2 --units 0-7
  cnnlab visualize saliency runs/lenet5-mnist --image my_digit.png --class 7
  cnnlab visualize maps runs/lenet5-mnist --index 42 --layer conv2 --units 0-7
  cnnlab visualize class-model runs/lenet5-mnist --out figures/
  cnnlab visualize segmentation runs/fcn-digit-scenes --count 4
  cnnlab visualize gradcam runs/unet-mnist-scenes --image scene.png --box 1
Writes into --out (default RUN/viz/) and prints each file written. See docs/VISUALIZE.md.
"""

from __future__ import annotations

import argparse

from cnnlab.choices import PICTURE_KINDS
from cnnlab.cli.flags import add_output
from cnnlab.errors import ConfigError


def parse_units(text: str) -> list[int]:
    """``"0,3,5-7"`` -> ``[0, 3, 5, 6, 7]``."""
    units: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
            if last < first:
                raise ConfigError(f"--units {text!r}: range {part} runs backwards "
                                  f"(write {last}-{first})")
            units += list(range(first, last + 1))
    except ValueError:
        raise ConfigError(f"--units {text!r}: expected numbers like 0,3,5-7") from None
    return units


def whole_number(text: str | None, flag: str, *, minimum: int = 1) -> int | None:
    """``--limit 5`` -> 5; None stays None; below ``minimum`` or not a number: ConfigError.
    (Parsed after argparse, so the CLI prints a one-line error, not argparse's usage.)"""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a whole number") from None
    if value < minimum:
        raise ConfigError(f"{flag} {value}: expected {minimum} or more")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("kind", choices=PICTURE_KINDS, metavar="KIND", help="what to draw (above)")
    parser.add_argument("run", metavar="RUN|CHECKPOINT", help="run directory or checkpoint file")
    parser.add_argument("--layer", help="layer: conv1, conv2, ... or a module path (features.3)")
    parser.add_argument("--units", help="units (channels), e.g. 0,3,5-7")
    parser.add_argument("--image", help="your own image file (maps, saliency)")
    parser.add_argument("--class", dest="target_class", metavar="C",
                        help="class name or index (saliency, class-model)")
    parser.add_argument("--split", default="test", help="data split to use (default test)")
    parser.add_argument("--index", metavar="N",
                        help="start at image N of the split (maps, saliency; default 0)")
    parser.add_argument("--limit", metavar="N",
                        help="search at most N images (top-patches, evolution)")
    parser.add_argument("--count", metavar="N",
                        help="images shown (segmentation, default 8; top-losses, default 30)")
    parser.add_argument("--normalize", action="store_true",
                        help="confusion: also the matrix normalised per true class")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="multilabel runs: a class is present where its sigmoid >= P "
                             "(default 0.5)")
    parser.add_argument("--box", metavar="K", help="detection runs: saliency/gradcam of the "
                                                   "K-th detected box, best score first "
                                                   "(default 0)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_output(parser, help="output folder (default RUN/viz)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.viz.visualize import visualize

    units = None if args.units is None else parse_units(args.units)
    paths = visualize(args.kind, args.run, out=args.out, which=args.checkpoint,
                      device=args.device, layer=args.layer, units=units, image=args.image,
                      target_class=args.target_class, split=args.split,
                      limit=whole_number(args.limit, "--limit"),
                      count=whole_number(args.count, "--count"),
                      index=whole_number(args.index, "--index", minimum=0) or 0,
                      normalize=args.normalize, threshold=args.threshold,
                      box=whole_number(args.box, "--box", minimum=0))
    for path in paths:
        print(f"wrote {path}")
    return 0
