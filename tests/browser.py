"""Headless Chromium for the tests that check a page as a browser renders it (the oracle's HTML report, the live
page, the report the oracle API returns). `.ci/run` installs Debian's chromium and sets
``FLAGBRIDGE_REQUIRE_CHROMIUM``, so CI fails rather than skips without it."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def require_chromium() -> str:
    """The browser's path; a failure in CI, a skip elsewhere, when there is none."""
    browser = chromium()
    if browser is None:
        if os.environ.get("FLAGBRIDGE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return browser


def render_in_chromium(url: str, directory: Path, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its script ran (and a 1280 px wide screenshot)."""
    common = [
        require_chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={directory / 'profile'}",
        "--window-size=1280,1600",
    ]
    if screenshot is not None:
        shot = subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
        assert shot.returncode == 0, shot.stderr[-2000:]
    result = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height
