"""The HTML report renders in a real browser (headless Chromium): not blank, every image loads."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_report_fits_the_page_and_reads_at_a_glance(tiny_run: Path, tmp_path: Path):
    """At a laptop's width no table, figure or block overflows the page; counts print as integers;
    the spectrum sheet and per-class chart name the classes. The screenshot is kept for a human look
    (DISCL_REPORT_SHOT=path copies it there)."""
    import os

    from discl.config import load_config
    from discl.data import build_dataset

    text = (tiny_run / "report.md").read_text()
    assert ".000 |" not in text, "integer counts printed as floats"
    page = (tiny_run / "report.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1000,2000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-overflowing="0"' in dom, dom.split("data-overflowing=", 1)[-1][:20]
    # the spectrum sheet has a label column with class names, and λ headers (a font that has λ)
    from discl.evaluation.report import _font, spectrum_sheet

    cfg = load_config(tiny_run / "config.yaml")
    classes = build_dataset(cfg.data).classes
    manifest = pd.read_csv(tiny_run / "filter" / "manifest.csv")
    png = spectrum_sheet(tiny_run, manifest, classes=classes)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert (sheet[30:, :100] < 128).any(), "no class names left of the rows"
    assert _font(13).getbbox("λ")[2] > 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1000,4000", page],
                   capture_output=True, timeout=120, check=True)
    if os.environ.get("DISCL_REPORT_SHOT"):
        shutil.copy(shot, os.environ["DISCL_REPORT_SHOT"])
        shutil.copy(tiny_run / "report" / "spectrum.png", os.environ["DISCL_REPORT_SHOT"] + ".spectrum.png")
        for name in ("levels.png", "per_class.png", "curves.png"):
            if (tiny_run / "report" / name).is_file():
                shutil.copy(tiny_run / "report" / name, os.environ["DISCL_REPORT_SHOT"] + f".{name}")
