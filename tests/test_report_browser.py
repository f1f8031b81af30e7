"""The HTML report renders in a real browser (headless Chromium): not blank, every image loads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")]


def test_report_renders_with_images(tiny_run: Path, tmp_path: Path):
    page = (tiny_run / "report.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert 'data-images-loaded="' in dom, "the page's load script did not run"
    loaded = dom.split('data-images-loaded="', 1)[1].split('"', 1)[0]
    ok, total = map(int, loaded.split("/"))
    assert total >= 4 and ok == total, f"images loaded: {loaded}"
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,2400", page],
                   capture_output=True, timeout=120, check=True)
    arr = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert arr.std() > 10, "the screenshot is (nearly) blank"
    assert (arr < 128).mean() > 0.01, "almost no dark pixels: text and figures did not render"
