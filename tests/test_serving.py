"""The verifier service (noisesearch.serving): protocol v1 on loopback, micro-batching, its bounds and its CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from loopback import free_port
from safetensors.torch import save as save_tensors

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from noisesearch.cli import main  # noqa: E402
from noisesearch.rewards import get_reward, registry  # noqa: E402
from noisesearch.serving.config import Limits  # noqa: E402
from noisesearch.serving.server import running_verifier  # noqa: E402
from noisesearch.serving.service import reward_version  # noqa: E402
from noisesearch.verifier_protocol import (  # noqa: E402
    HEALTH_PATH,
    PROTOCOL,
    SCORE_PATH,
    ScoreRequest,
    decode_reply,
    encode_request,
)
from noisesearch.version import __version__  # noqa: E402

READY = re.compile(r"serving reward '\w+' at (http://\S+)")


def digits(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def score_request(images: torch.Tensor, conditions: list, prefix: str = "i") -> ScoreRequest:
    return ScoreRequest([f"{prefix}{k}" for k in range(len(images))], images, conditions)


def post(url: str, request: ScoreRequest | bytes) -> httpx.Response:
    body = request if isinstance(request, bytes) else encode_request(request)
    return httpx.post(url + SCORE_PATH, content=body, timeout=30)


def scores_of(url: str, request: ScoreRequest) -> torch.Tensor:
    reply = post(url, request)
    assert reply.status_code == 200, reply.text
    return torch.tensor(decode_reply(reply.json(), request.ids))


class Counting:
    """Stub reward: each image's mean plus its label; records the batch size of every call and fails on label 7."""

    name = "test_counting"
    calls: list[int] = []

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if bool((cond == 7).any()):
            raise RuntimeError("label 7 breaks me")
        type(self).calls.append(len(images))
        return images.flatten(1).mean(1) + cond


class Blocking:
    """Stub reward that holds every call until `release` is set (a slow reward, to fill the queue)."""

    name = "test_blocking"
    entered, release = threading.Event(), threading.Event()

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        type(self).entered.set()
        assert type(self).release.wait(20)
        return torch.zeros(len(images))


class PromptLength:
    """Stub prompt reward: the length of each image's prompt; counts its constructions (model loads)."""

    name = "test_prompts"
    built = 0

    def __init__(self, prompts: list[str] = (), device: str = "cpu") -> None:
        type(self).built += 1
        self.prompts = list(prompts)

    def add_prompts(self, prompts: list[str]) -> None:
        self.prompts += prompts

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.tensor([float(len(self.prompts[i])) for i in cond.tolist()])


class SelfSimilar:
    """Stub reward that compares each image with its x0 prediction (as the self-supervised verifiers do)."""

    name = "test_x0"
    x0_sigma = 2.5

    def __call__(self, images: torch.Tensor, cond: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (images - x0).flatten(1).mean(1)


@pytest.fixture(scope="module")
def classifier_url():
    with running_verifier("classifier", limits=Limits(max_delay_ms=0)) as url:
        yield url


@pytest.fixture
def stubs(monkeypatch):
    for stub in (Counting, Blocking, PromptLength, SelfSimilar):
        monkeypatch.setitem(registry._REWARDS, stub.name, stub)
    Counting.calls, PromptLength.built = [], 0
    Blocking.entered.clear()
    Blocking.release.clear()
    yield
    Blocking.release.set()


def test_scores_equal_the_in_process_reward_bit_for_bit(classifier_url):
    images, labels = digits(6), [3, 1, 4, 1, 5, None]
    request = score_request(images, labels)
    expected = get_reward("classifier")(images, torch.tensor([3, 1, 4, 1, 5, 0]))
    assert torch.equal(scores_of(classifier_url, request), expected)
    reply = post(classifier_url, request).json()
    assert reply["ids"] == request.ids and reply["reward"] == "classifier" and reply["protocol"] == PROTOCOL


def test_health_reports_the_reward_its_version_device_traits_and_queue(classifier_url):
    health = httpx.get(classifier_url + HEALTH_PATH).json()
    assert health["protocol"] == PROTOCOL and health["reward"] == "classifier" and health["device"] == "cpu"
    assert health["version"] == reward_version("classifier", {}, None)
    assert health["version"].startswith(f"noisesearch-{__version__}+")
    assert (health["x0_sigma"], health["takes_prompts"], health["set_level"]) == (None, False, False)
    assert (health["max_batch"], health["max_delay_ms"], health["max_queue"], health["queued"]) == (64, 0, 1024, 0)


def test_the_version_changes_with_the_arguments_and_prefers_the_rewards_own():
    assert reward_version("clip", {"model": "a"}, None) != reward_version("clip", {"model": "b"}, None)
    own = type("Own", (), {"version": "ImageReward-v1.0"})()
    assert reward_version("clip", {}, own).startswith("ImageReward-v1.0+")


def test_malformed_bodies_a_wrong_protocol_and_a_wrong_condition_are_400(classifier_url):
    garbage = post(classifier_url, b"\x00not a safetensors body")
    assert garbage.status_code == 400 and "safetensors" in garbage.json()["error"]
    ids = json.dumps(["a"])
    other = save_tensors({"images": digits(1)}, metadata={"protocol": "noisesearch-verifier/2", "ids": ids,
                                                          "conditions": "[1]"})
    wrong = post(classifier_url, other)
    assert wrong.status_code == 400 and "noisesearch-verifier/2" in wrong.json()["error"]
    prompt = post(classifier_url, score_request(digits(1), ["a cat"]))
    assert prompt.status_code == 400 and "labels (int)" in prompt.json()["error"]


def test_micro_batching_merges_concurrent_requests_into_one_reward_call(stubs):
    requests = [score_request(digits(2, seed), [seed, seed], f"r{seed}-") for seed in range(4)]
    with running_verifier("test_counting", limits=Limits(max_batch=8, max_delay_ms=5000)) as url:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda r: scores_of(url, r), requests))
    assert Counting.calls == [8]  # the batch closed at max_batch, long before the delay
    for request, scores in zip(requests, replies, strict=True):
        assert torch.equal(scores, Counting()(request.images, torch.tensor(request.conditions)))


def test_a_failing_request_fails_alone_with_one_line_and_its_batch_mates_are_scored(stubs):
    good, bad = score_request(digits(1), [1], "good"), score_request(digits(1), [7], "bad")
    with running_verifier("test_counting", limits=Limits(max_batch=2, max_delay_ms=5000)) as url:
        with ThreadPoolExecutor(2) as pool:
            good_reply, bad_reply = pool.map(lambda r: post(url, r), [good, bad])
    assert good_reply.status_code == 200 and bad_reply.status_code == 500
    assert bad_reply.json() == {"error": "reward 'test_counting' failed: RuntimeError: label 7 breaks me"}


def test_a_full_queue_answers_busy_and_the_queued_requests_are_still_scored(stubs):
    limits = Limits(max_batch=1, max_delay_ms=0, max_queue=2, max_request_images=2)
    with running_verifier("test_blocking", limits=limits) as url, ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, url, score_request(digits(1), [0]))
        assert Blocking.entered.wait(20)  # the first request is in the reward call, off the queue
        queued = [pool.submit(post, url, score_request(digits(1), [0])) for _ in range(2)]
        deadline = time.monotonic() + 20
        while httpx.get(url + HEALTH_PATH).json()["queued"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = post(url, score_request(digits(1), [0]))
        Blocking.release.set()
        assert busy.status_code == 503 and busy.json()["error"].startswith("busy: 2 images wait")
        assert [f.result().status_code for f in (first, *queued)] == [200, 200, 200]


def test_oversized_requests_are_413(stubs):
    limits = Limits(max_request_images=2, max_body_mb=8 * 28 * 28 * 4 / 2**20)  # room for about 8 images
    with running_verifier("test_counting", limits=limits) as url:
        many = post(url, score_request(digits(3), [0, 0, 0]))
        assert many.status_code == 413 and "3 images" in many.json()["error"]
        big = post(url, score_request(digits(9), [0] * 9))
        assert big.status_code == 413 and "bytes" in big.json()["error"]
        assert post(url, score_request(digits(2), [0, 0])).status_code == 200


def test_prompts_map_to_indices_of_a_table_grown_without_rebuilding_the_reward(stubs):
    with running_verifier("test_prompts") as url:
        assert httpx.get(url + HEALTH_PATH).json()["takes_prompts"] is True
        first = scores_of(url, score_request(digits(3), ["a cat", "a red fox", None]))
        second = scores_of(url, score_request(digits(3), ["an owl", "a cat", "a red fox"]))
        labels = post(url, score_request(digits(1), [3]))
    assert first.tolist() == [5.0, 9.0, 0.0] and second.tolist() == [6.0, 5.0, 9.0]
    assert PromptLength.built == 1
    assert labels.status_code == 400 and "prompts (str)" in labels.json()["error"]


def test_a_reward_with_x0_sigma_takes_each_images_x0_and_refuses_a_request_without(stubs):
    images, x0 = digits(2), digits(2, seed=1)
    with running_verifier("test_x0") as url:
        assert httpx.get(url + HEALTH_PATH).json()["x0_sigma"] == 2.5
        scores = scores_of(url, ScoreRequest(["a", "b"], images, [0, 1], x0))
        missing = post(url, score_request(images, [0, 1]))
    assert torch.equal(scores, SelfSimilar()(images, None, x0))
    assert missing.status_code == 400 and "x0 prediction at sigma 2.5" in missing.json()["error"]


@pytest.mark.parametrize(("argv", "words"), [
    (["fid_oracle"], "set-level"),
    (["classifier", "--max-request-images", "9", "--max-queue", "4"], "over --max-queue"),
    (["classifier", "--replicas", "2"], "need --placement ray"),
    (["test_prompts", "--reward-arg", "prompts=[]"], "learns the prompts from its requests"),
])
def test_the_cli_refuses_what_it_cannot_serve_with_one_line(argv, words, stubs, capsys):
    assert main(["serve-verifier", *argv]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def serve_in_subprocess(*args: str, wait_s: float = 60) -> tuple[subprocess.Popen, str]:
    """`noisesearch serve-verifier ARGS` in a subprocess, once it prints its ready line (and its URL)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "noisesearch.cli", "serve-verifier", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(wait_s)
    match = READY.match(found[0]) if found else None
    if match is None:
        proc.kill()
        pytest.fail(f"the service did not start: {found} {proc.communicate(timeout=30)[1][-2000:]}")
    return proc, match.group(1)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    finally:
        proc.kill()


def test_the_cli_serves_the_classifier_and_stops_cleanly_on_sigterm():
    proc, url = serve_in_subprocess("classifier", "--port", "0", "--max-delay-ms", "0")
    images = digits(4, seed=1)
    try:
        scores = scores_of(url, score_request(images, [0, 2, 4, 6]))
    finally:
        rc = stop(proc)
    assert torch.equal(scores, get_reward("classifier")(images, torch.tensor([0, 2, 4, 6])))
    assert rc == 0 and "Traceback" not in proc.stderr.read()


@pytest.fixture
def local_ray():
    """A local Ray instance of one CPU (fewer idle workers start than with every core), stopped at the end."""
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.mark.slow
def test_ray_serve_placement_serves_the_same_scores_from_a_replica(local_ray):
    """The slow one: Ray Serve starts on a local Ray, runs one replica (which loads the reward) and stops."""
    from noisesearch.serving.ray_serve import running_verifier_ray

    images = digits(3, seed=2)
    with running_verifier_ray("classifier", port=free_port(), limits=Limits(max_delay_ms=0)) as url:
        health = httpx.get(url + HEALTH_PATH, timeout=30).json()
        scores = scores_of(url, score_request(images, [1, 2, 3]))
        missing = httpx.get(url + "/v1/nothing", timeout=30)
    assert (health["placement"], health["replicas"], health["reward"]) == ("ray", 1, "classifier")
    assert torch.equal(scores, get_reward("classifier")(images, torch.tensor([1, 2, 3])))
    assert missing.status_code == 404 and "POST /v1/score" in missing.json()["error"]
