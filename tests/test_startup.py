"""``import cnnlab``, ``cnnlab --help`` and every ``cnnlab COMMAND --help`` load no torch
(issue 17: instant start). A behaviour, checked in a fresh process; the times are measured by
bench/startup.py, not here."""

from __future__ import annotations

import json
import subprocess
import sys

from cnnlab.cli.main import COMMANDS

SCRIPT = r"""
import contextlib, io, json, sys
from cnnlab.cli.main import main
heavy = {}
for argv in [["--help"]] + [[name, "--help"] for name in sys.argv[1:]]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    heavy[" ".join(argv)] = [m for m in ("torch", "matplotlib", "sklearn") if m in sys.modules]
print(json.dumps(heavy))
"""


def test_no_help_text_imports_torch():
    out = subprocess.run([sys.executable, "-c", SCRIPT, *COMMANDS], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    heavy = json.loads(out)
    assert len(heavy) == len(COMMANDS) + 1
    assert {argv: found for argv, found in heavy.items() if found} == {}


def test_import_cnnlab_is_light_and_its_names_load_on_use():
    script = ("import sys, cnnlab; light = 'torch' not in sys.modules; "
              "cnnlab.TrainConfig; still = 'torch' not in sys.modules; cnnlab.create; "
              "print(light, still, 'torch' in sys.modules, cnnlab.__version__)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["True", "True", "True", "0.1.0"]
