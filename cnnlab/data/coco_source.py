"""``--data coco``: a COCO folder found under ``--data-root`` (or given as ``--data PATH``).

``cnnlab train --task detect --model unet --data coco:size=64 --data-root FOLDER`` reads
``FOLDER`` (or ``FOLDER/coco``) with :func:`cnnlab.data.coco.load_coco`: every image
letterboxed onto ``size x size``; a single annotation file has ``holdout`` of its images (seed 0)
held out as the test split.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.coco import CocoSet, is_coco_folder, load_coco
from cnnlab.data.registry import DataSource, LoadRequest, register_source
from cnnlab.errors import DataError

COCO_OPTIONS = "size=128,holdout=0.2"


def coco_options(options: str) -> dict:
    """``size=64,holdout=0.1`` -> ``{"size": 64, "holdout": 0.1}`` (DataError naming it)."""
    values = {"size": 128, "holdout": 0.2}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        try:
            values[key] = {"size": int, "holdout": float}[key](value)
        except (KeyError, ValueError):
            raise DataError(f"coco:{options}: cannot read option {item!r} (e.g. "
                            f"coco:{COCO_OPTIONS})") from None
    if not 8 <= values["size"] <= 2048 or values["size"] % 4:
        raise DataError(f"coco:size={values['size']}: expected a multiple of 4 in 8..2048")
    return values


def locate_coco(roots: list[Path]) -> Path | None:
    """The first search root that is a COCO folder, or holds one as ``coco/``."""
    for root in roots:
        for folder in (root, root / "coco"):
            if is_coco_folder(folder):
                return folder
    return None


def load_coco_split(request: LoadRequest) -> CocoSet:
    """``--data coco[:size=N,holdout=F] --data-root FOLDER`` (a held-out part by seed 0)."""
    return load_coco(request.found, request.split, **coco_options(request.options),
                     skip_bad=request.skip_bad)


register_source(DataSource(
    "coco", "a COCO-style detection folder (annotations.json + images/): give --data-root",
    load_coco_split, locate=locate_coco, folder="coco", options=COCO_OPTIONS))
