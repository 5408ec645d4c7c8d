"""Look inside a trained network: filters, feature maps, top patches, saliency, class models,
feature evolution, errors, curves and the confusion matrix, written as PNG files.

kinds:
  filters      first conv layer's kernels (--layer conv2: per input channel)
  maps         feature maps of every conv layer (or --layer) for a test image or --image
  top-patches  for --units of --layer (default: last conv), the 9 most exciting data patches
  saliency     input-gradient saliency and Grad-CAM (last conv) for 8 test images or --image;
               detection runs: of one detected box (--box K, best score first)
  gradcam      the same; detection runs: Grad-CAM of box --box K on the fused stride-4 map
  class-model  the image maximising each class score (or --class) by gradient ascent
  evolution    strongest patch per unit at each snapshot (train with --snapshot-epochs 1,2,5)
  errors       misclassified test images captioned true->pred with the top-2 guesses
  curves       loss, accuracy and learning rate per epoch
  confusion    confusion-matrix heat map of the test split
  segmentation image / truth / predicted mask for --count test images (a --task segment run)

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
    parser.add_argument("--count", metavar="N", help="images shown (segmentation, default 8)")
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
                      box=whole_number(args.box, "--box", minimum=0))
    for path in paths:
        print(f"wrote {path}")
    return 0
