"""Screenshots of the built documentation site in headless Chromium (the system's, through Playwright), for the
record of what the site shows: its home page, one algorithm family page and the rendered table1 report.

    mkdocs build --strict && python tools/site_screenshots.py [--site site] [--out docs/screenshots]

Fails if a page logs a console error (the site must open offline: no CDN, no web font).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGES = {"home.png": "index.html", "algorithm-family.png": "algorithms/reference/index.html",
         "report-table1.png": "results/table1/report/index.html"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("site"))
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        for name, path in PAGES.items():
            page.goto((args.site / path).resolve().as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=args.out / name)
            print(f"{args.out / name}: {path}")
        browser.close()
    if errors:
        raise SystemExit(f"console errors: {errors}")


if __name__ == "__main__":
    main()
