"""`noisesearch explore`: the page of a traced ε-greedy run opens offline in headless Chromium with no console error,
and its screenshot shows the run's images (pixels compared with the image files)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from noisesearch.cli import main
from noisesearch.errors import NoiseSearchError
from noisesearch.explore import explore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "run"
    assert main(["sample", "--algorithm", "eps_greedy", "--N", "3", "--K", "2", "--steps", "6", "--reward",
                 "brightness", "--labels", "2,7", "--seed", "4", "--out", str(out), "--trace", "--no-progress"]) == 0
    return out


def test_the_page_holds_every_image_and_chart_inline(traced_run):
    text = explore(traced_run).read_text()
    assert text.count("class='image'") == 2 and text.count("<svg class='candidates'") == 2
    assert text.count("alt='x0 prediction'") == 2 * 4  # 4 searched steps of 6 (churn), per image
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text  # offline


def test_a_run_without_trace_shows_its_images_and_says_how_to_trace(tmp_path):
    assert main(["sample", "--algorithm", "best_of_n", "--N", "2", "--steps", "4", "--labels", "1", "--out",
                 str(tmp_path / "plain"), "--no-progress"]) == 0
    text = explore(tmp_path / "plain").read_text()
    assert "alt='final image'" in text and "--trace" in text and "<svg" not in text
    with pytest.raises(NoiseSearchError, match="holds no result.json: give the --out directory"):
        explore(tmp_path)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs it)")
def test_chromium_renders_the_page_and_its_images(traced_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    page_path = explore(traced_run)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("requestfailed", lambda request: errors.append(f"request {request.url}"))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            assert errors == []
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            shot = page.locator("img[alt='final image']").first.screenshot()
        finally:
            browser.close()
    rendered = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.int16)
    source = np.asarray(Image.open(traced_run / "images/000_label2.png").convert("L"), dtype=np.int16)
    cell = rendered.shape[0] / source.shape[0]  # pixelated upscaling: each source pixel is a cell x cell block
    centres = (np.arange(source.shape[0]) * cell + cell / 2).astype(int)
    assert np.abs(rendered[np.ix_(centres, centres)] - source).max() <= 2
    assert source.std() > 20  # a digit, not a blank square


def test_a_tree_search_shows_the_step_each_simulation_expanded(tmp_path):
    assert main(["sample", "--algorithm", "mcts", "--N", "2", "--S", "1", "--steps", "4", "--labels", "5", "--out",
                 str(tmp_path / "tree"), "--trace", "--no-progress"]) == 0
    text = explore(tmp_path / "tree").read_text()
    assert text.count("<svg class='tree'") == 1 and "simulations)" in text


def test_a_bench_cell_shows_each_iterations_winner(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    preset = Preset.from_dict("p", {"labels": 2, "steps": 4, "rewards": [{"name": "b", "reward": "brightness"}],
                                    "runs": [{"algorithm": "eps_greedy", "params": {"N": 2, "K": 2}}]})
    run_bench(preset, tmp_path / "bench", progress=False, model_loader=tiny_denoiser)
    with pytest.raises(NoiseSearchError, match="pick a cell with --cell SLUG, one of eps_greedy_N2_K2__b__r0$"):
        explore(tmp_path / "bench")
    text = explore(tmp_path / "bench", cell="eps_greedy_N2_K2__b__r0").read_text()
    assert text.count("class='image'") == 2 and text.count("<svg class='candidates'") == 2
    assert "Each iteration's winner" in text and text.count("alt='final image'") == 2
