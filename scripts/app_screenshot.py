"""Screenshot of the web demo (``twohded app``) for the README: docs/figures/app.png.

    apt-get install -y chromium chromium-driver && pip install selenium   # once
    python scripts/app_screenshot.py                                     # -> docs/figures/app.png

What it does: makes a **randomly initialised** ``2hded`` checkpoint (seed 0: the depth and
all-in-focus image it shows are not a trained model's), renders one built-in synthetic scene
(``twohded scenes --seed 3 --preset paper``, 320x240), starts ``twohded app`` on a free port of
127.0.0.1, opens the page in headless Chromium (Debian's ``/usr/bin/chromium`` driven by
Selenium through ``/usr/bin/chromedriver``), uploads the defocused scene, clicks Predict,
waits for both result images and saves the window as a palette PNG (kept under 300 KB).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(tmp: Path) -> tuple[Path, Path]:
    """(random checkpoint, defocused synthetic photo) in ``tmp``."""
    import torch

    from twohded.checkpoint import save_checkpoint
    from twohded.cli import main
    from twohded.models import create_model

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "random_2hded.pt", {"model_name": "2hded", "model_options": {},
                                                    "model_state": create_model("2hded").state_dict()})
    assert main(["scenes", "--n", "1", "--seed", "3", "--preset", "paper", "-o", str(tmp / "scene"), "--no-figure"]) == 0
    return ckpt, next((tmp / "scene" / "defocused").glob("*.png"))


def _screenshot(url: str, photo: Path, out: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 300)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        upload.send_keys(str(photo))
        time.sleep(2)
        driver.find_element(By.XPATH, "//button[normalize-space()='Predict']").click()
        wait.until(lambda d: len([i for i in d.find_elements(By.CSS_SELECTOR, "img") if "depth_color" in (i.get_attribute("src") or "")
                                  or "aif" in (i.get_attribute("src") or "")]) >= 2)
        time.sleep(3)
        tmp_png = out.with_suffix(".raw.png")
        driver.save_screenshot(str(tmp_png))
    finally:
        driver.quit()
    from PIL import Image

    img = Image.open(tmp_png).convert("RGB")
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    tmp_png.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "app.png")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, photo = _prepare(tmp)
        port = _free_port()
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        proc = subprocess.Popen([sys.executable, "-m", "twohded", "app", "--checkpoint", str(ckpt), "--port", str(port),
                                 "--device", "cpu", "--preset", "paper"], env=env)
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(600):
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    time.sleep(0.5)
            _screenshot(url, photo, args.out, args.width, args.height)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
