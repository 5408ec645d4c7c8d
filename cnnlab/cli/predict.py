"""Top-k labels with probabilities for your own images (files or folders).

Preprocessing comes from the checkpoint: channels, size, normalisation; digit models also invert
dark-on-light drawings and centre the digit as in training, so a PNG of a digit just works.

examples:
  cnnlab predict runs/lenet5-mnist my_digit.png
  cnnlab predict runs/lenet5-mnist photos/ --top-k 5 --json
  cnnlab predict runs/fcn-scenes scene.png --out masks/   # segment run: coloured mask PNGs
  cnnlab predict runs/fcn-scenes photo.png --keep-size    # no rescaling to the training canvas
  cnnlab predict runs/lenet5-scenes scene.png --threshold 0.3  # multilabel run: label set
  cnnlab predict runs/spectro1d-spoken-digits seven.wav      # 1-D sound run: .wav files
  cnnlab predict runs/char1d-words --text Straße --text house  # words run: --text WORD
  cnnlab predict runs/bovw-mnist my_digit.png --top-k 10   # bovw run: class + SVM scores
  cnnlab predict runs/unet-mnist-scenes scene.png --json   # detect: boxes (COCO results)
"""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.flags import add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files or folders (spoken-digits runs: .wav files)")
    parser.add_argument("--text", action="append", default=[], metavar="WORD",
                        help="words run: a word to classify (repeatable)")
    parser.add_argument("--top-k", type=int, default=3, help="labels per image (default 3)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable images with a warning instead of stopping")
    parser.add_argument("--threshold", type=float, default=0.5, metavar="P",
                        help="multilabel run: report the classes whose sigmoid is >= P "
                             "(default %(default)s)")
    parser.add_argument("--keep-size", action="store_true",
                        help="segment run: predict at the image's own size (default: rescaled "
                             "so that its longer side is the training canvas's)")
    add_output(parser, help="folder for the mask PNGs of a segment run (default "
                                      "RUN/masks)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.predict import predict_images

    results = predict_images(args.run, args.images, k=args.top_k, which=args.checkpoint,
                             device=args.device, out=args.out, threshold=args.threshold,
                             skip_bad=args.skip_bad, texts=args.text, keep_size=args.keep_size)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        guesses = "  ".join(f"{label} {100 * p:5.1f}%" for label, p in r["top"])
        if "score" in r:  # a bag-of-words run: its class, then scores (not probabilities)
            guesses = (f"{r['class']}  ({r['score']}: "
                       f"{', '.join(f'{label} {s:.3f}' for label, s in r['top'])})")
        if "labels" in r:  # multilabel / segment: the set of classes found
            guesses = f"{{{', '.join(r['labels'])}}}  {guesses}" + (
                f"  mask {r['mask']}" if "mask" in r else "") + (
                f"  {len(r['detections'])} objects, {r['picture']}" if "picture" in r else "")
        print(f"{r['path'] if 'path' in r else repr(r['text'])}: {guesses}")
    return 0
