"""`noisesearch demo` through its HTTP API: a search runs in the background while the page polls its NFE, the best
image of each scoring and the reward curve, beside naive sampling at the same seed; bad requests, long budgets
and a second search are refused with one line."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from noisesearch.demo.app import Demo, make_app  # noqa: E402


@pytest.fixture(scope="module")
def client():
    demo = Demo(max_seconds=30)
    demo.seconds_per_nfe = {backend: 0.01 for backend in demo.seconds_per_nfe}  # the estimate does not vary
    return demo, TestClient(make_app(demo))


def wait(client: TestClient, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get("/api/run").json()
        if state["status"] != "running":
            return state
        time.sleep(0.05)
    raise AssertionError("the search did not end")


def test_the_page_and_its_options_are_served(client):
    _, http = client
    page = http.get("/").text
    assert "<form id=\"form\">" in page and "http" not in page.split("<script>")[1]  # no CDN, no other server
    assert http.get("/api/options").json()["algorithms"] == ["best_of_n", "eps_greedy", "adaptive_eps_greedy"]


def test_a_search_runs_beside_naive_and_reports_its_progress(client):
    demo, http = client
    answer = http.post("/api/run", json={"label": 3, "reward": "brightness", "algorithm": "best_of_n", "nfe": 140,
                                         "seed": 5})
    assert answer.status_code == 200 and answer.json()["params"] == {"N": 4}
    busy = http.post("/api/run", json={"label": 3, "reward": "brightness", "algorithm": "best_of_n", "nfe": 140})
    state = wait(http)
    assert busy.status_code == 409 and "a search is running" in busy.json()["error"]
    assert state["status"] == "done" and state["nfe"] == 140 == state["result"]["nfe"]
    assert state["naive"]["image"] and state["best"]["image"] and state["result"]["image"]
    assert len(state["curve"]) == 1 and state["curve"][0][1] == pytest.approx(state["result"]["reward"])
    assert state["result"]["reward"] >= state["best"]["score"] - 1e-6


def test_eps_greedy_fits_its_iterations_to_the_budget_and_long_searches_need_confirming(client):
    demo, http = client
    plan = http.post("/api/run", json={"label": 7, "reward": "classifier", "algorithm": "eps_greedy", "nfe": 150})
    assert plan.status_code == 200 and plan.json()["params"] == {"N": 4, "K": 2}
    state = wait(http)
    assert state["status"] == "done" and state["result"]["nfe"] <= 150 and len(state["curve"]) > 10
    long = {"label": 1, "reward": "brightness", "algorithm": "best_of_n", "nfe": 5000}  # 50 s estimated, over 30
    refused = http.post("/api/run", json=long)
    assert refused.status_code == 409 and "send confirm=true" in refused.json()["error"]


@pytest.mark.parametrize("bad, words", [
    ({"label": 12}, "label must be a digit 0-9"),
    ({"reward": "nope"}, "choose a reward of classifier"),
    ({"nfe": 10}, "the budget must be an integer NFE per image from 70"),
    ({"seed": -1}, "seed must be an integer"),
])
def test_bad_requests_get_one_line(client, bad, words):
    _, http = client
    answer = http.post("/api/run", json={"label": 3, "reward": "brightness", "algorithm": "best_of_n", "nfe": 70,
                                         **bad})
    assert answer.status_code == 400 and words in answer.json()["error"] and "\n" not in answer.json()["error"]
