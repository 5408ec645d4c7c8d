"""``need(what, present)``: skip a test that needs something outside the repository, or fail
it when ``CNNLAB_REQUIRE_ALL=1`` (CI), so a missing install step cannot hide behind a skip."""

from __future__ import annotations

import os
import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def need(what: str, present: bool) -> None:
    """Skip (or, under ``CNNLAB_REQUIRE_ALL=1``, fail) the test unless ``present``."""
    if present:
        return
    if os.environ.get("CNNLAB_REQUIRE_ALL") == "1":
        pytest.fail(f"this test needs {what} (CNNLAB_REQUIRE_ALL=1: nothing may be skipped)")
    pytest.skip(f"needs {what}")


def chromium_path() -> str:
    """A headless Chromium (Debian's chromium), or skip/fail via :func:`need`."""
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    need("headless Chromium (Debian's chromium; scripts/test installs it)", found is not None)
    return found
