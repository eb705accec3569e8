"""The remote reward against stub verifier services on 127.0.0.1 (tests/verifier_stub.py): scores matched by id,
retries, one-line refusals naming the url, the cache, identical search results, and nothing recorded from a
failed call (sample, bench)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from loopback import free_port
from verifier_stub import StubService, brightness

import noisesearch as ns
from noisesearch import NoiseSearchError, get_reward, search
from noisesearch.adaptive import CalibrationConfig
from noisesearch.cli import main
from noisesearch.drivers.reliability import measure_reliability
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.presets import Preset
from noisesearch.experiments.store import read_results
from noisesearch.testing import tiny_denoiser

pytest.importorskip("httpx")
STUB = Path(__file__).with_name("verifier_stub.py")


@pytest.fixture
def stub():
    """A stub service of the brightness reward, stopped at the end."""
    service = StubService(brightness, name="brightness")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def classifier_stub():
    """A stub service wrapping the in-process classifier reward."""
    service = StubService(get_reward("classifier"), name="classifier")
    yield service
    service.stop()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_scores_come_back_in_request_order_matched_by_id(stub):
    reward = ns.RemoteReward(stub.url)
    assert reward.name == "remote:brightness" and reward.version == "1" and reward.x0_sigma is None
    x = images(5)
    stub.mode = "shuffle"  # the reply lists ids and scores reversed
    got = reward(x, torch.arange(5))
    assert torch.equal(got, brightness(x, None))
    sent = stub.requests[-1]
    assert torch.equal(sent.images, x) and sent.conditions == [0, 1, 2, 3, 4] and len(set(sent.ids)) == 5
    reward(x, torch.arange(5))
    assert set(stub.requests[-1].ids).isdisjoint(sent.ids)  # fresh ids for every call
    assert stub.health_checks == 1  # once, on construction


@pytest.mark.parametrize("mode, fragment", [
    ("wrong_ids", "ids other than the 3 sent"),
    ("wrong_count", "scores 2 images with ids other than the 3 sent"),
    ("nan", "not a finite number"),
    ("non_json", "the reply is no JSON (<html>not json</html>)"),
    ("fail", "/v1/score answered 500 (the reward failed: boom)"),
    ("too_large", "/v1/score answered 413 (3 images are over max_request_images 2)"),
])
def test_a_bad_reply_is_a_one_line_error_naming_the_url(stub, mode, fragment):
    reward = ns.RemoteReward(stub.url, retries=2, backoff=0)
    stub.mode = mode
    with pytest.raises(NoiseSearchError) as err:
        reward(images(3), torch.zeros(3, dtype=torch.long))
    message = str(err.value)
    assert message.startswith((f"remote reward at {stub.url}: ", f"remote reward: {stub.url}/v1/score "))
    assert fragment in message and "\n" not in message
    assert len(stub.requests) == 1  # a bad reply is not retried


def test_a_slow_reply_times_out(stub):
    reward = ns.RemoteReward(stub.url, timeout=0.3)
    stub.delay = 2.0
    start = time.perf_counter()
    with pytest.raises(NoiseSearchError, match=r"remote reward: .*/v1/score gave no answer within 0.3 s \(a slow"):
        reward(images(1), torch.zeros(1, dtype=torch.long))
    assert time.perf_counter() - start < 1.5


def test_busy_answers_are_retried_with_backoff_then_refused(stub):
    reward = ns.RemoteReward(stub.url, retries=2, backoff=0.05)
    stub.busy = 2
    start = time.perf_counter()
    assert torch.equal(reward(images(2), torch.zeros(2, dtype=torch.long)), brightness(images(2), None))
    assert len(stub.requests) == 3 and time.perf_counter() - start >= 0.05 + 0.1  # backoff 0.05, then 0.1
    stub.busy = 5
    with pytest.raises(NoiseSearchError, match=r"answered 503 \(busy: the queue is full, retry later\) after 3 tries"):
        reward(images(2), torch.zeros(2, dtype=torch.long))


def test_a_service_down_then_up_is_retried(stub):
    reward = ns.RemoteReward(stub.url, retries=4, backoff=0.1)
    port = stub.port
    stub.stop()
    restarted = []
    timer = threading.Timer(0.2, lambda: restarted.append(StubService(brightness, name="brightness", port=port)))
    timer.start()
    try:
        assert torch.equal(reward(images(2), torch.zeros(2, dtype=torch.long)), brightness(images(2), None))
    finally:
        timer.join()
        for service in restarted:
            service.stop()
    reward.poster.retries = 1  # down for good
    with pytest.raises(NoiseSearchError, match=rf"{stub.url}/v1/score cannot be reached \(.*\) after 2 tries; is the "
                                               "server running there"):
        reward(images(2), torch.zeros(2, dtype=torch.long))


def test_construction_checks_the_service_once():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NoiseSearchError, match=rf"^remote reward at {url}: no verifier service answers \(.*\): start "
                                               "one with `noisesearch serve-verifier NAME --port PORT`$"):
        ns.RemoteReward(url)
    with pytest.raises(NoiseSearchError, match="needs url=http://HOST:PORT"):
        get_reward("remote")
    for health, fragment in [({"protocol": "other/2"}, "speaks 'other/2', not 'noisesearch-verifier/1'"),
                             ({"set_level": True}, "set-level reward 'stub'"),
                             ({"x0_sigma": "high"}, "lacks a valid x0_sigma"),
                             ({"takes_prompts": True}, "scores prompts"),
                             ({"scoring_only": True}, "a held-out evaluator")]:
        service = StubService(brightness, **health)
        try:
            with pytest.raises(NoiseSearchError, match=fragment):
                ns.RemoteReward(service.url)
        finally:
            service.stop()


def test_prompts_are_sent_for_a_prompt_reward_and_requests_are_chunked():
    service = StubService(brightness, takes_prompts=True, max_request_images=2)
    try:
        reward = ns.RemoteReward(service.url, prompts=["a cat", "a dog"])
        x = images(5)
        assert torch.equal(reward(x, torch.tensor([1, 0, 1, 1, 0])), brightness(x, None))
        assert [r.conditions for r in service.requests] == [["a dog", "a cat"], ["a dog", "a dog"], ["a cat"]]
        with pytest.raises(NoiseSearchError, match="condition 2 indexes none of the 2 prompts given"):
            reward(x[:1], torch.tensor([2]))
    finally:
        service.stop()


def test_the_cache_skips_requests_for_images_scored_before(stub, tmp_path):
    reward = ns.RemoteReward(stub.url, cache_dir=tmp_path)
    x = images(3)
    first = reward(x, torch.arange(3))
    again = reward(torch.cat([x[:2], images(1, seed=1)]), torch.arange(3))
    assert torch.equal(again[:2], first[:2]) and len(stub.requests) == 2
    assert len(stub.requests[1].ids) == 1 and torch.equal(stub.requests[1].images, images(1, seed=1))
    reward(x[:1], torch.tensor([1]))  # another condition is another key
    assert len(stub.requests) == 3
    stub.health["version"] = "2"  # another version of the served reward never hits
    assert len(list(tmp_path.rglob("*.json"))) == 5
    ns.RemoteReward(stub.url, cache_dir=tmp_path)(x, torch.arange(3))
    assert len(stub.requests) == 4 and not list(tmp_path.rglob("*.tmp"))


def test_a_reply_from_another_reward_version_is_refused(stub):
    reward = ns.RemoteReward(stub.url)
    stub.health["version"] = "2"  # the service was restarted with another version under the search
    with pytest.raises(NoiseSearchError, match="from reward 'brightness' version '2', not the 'brightness' version "
                                               "'1' it served"):
        reward(images(1), torch.zeros(1, dtype=torch.long))


def tiny_search(reward, reward_args=None, algorithm="best_of_n", **params):
    return search(algorithm=algorithm, reward=reward, reward_args=reward_args, labels=[3, 5], seed=0,
                  denoiser=tiny_denoiser(), steps=4, evaluator=None, **({"N": 2} | params))


def test_a_search_with_the_remote_classifier_equals_the_in_process_one(classifier_stub):
    remote = tiny_search("remote", {"url": classifier_stub.url})
    local = tiny_search("classifier")
    assert torch.equal(remote.images, local.images) and torch.equal(remote.rewards, local.rewards)
    assert remote.config["reward"] == "remote" and remote.config["reward_args"] == {"url": classifier_stub.url}
    remote = tiny_search(ns.RemoteReward(classifier_stub.url), algorithm="eps_greedy", K=1)  # scores x0 predictions
    local = tiny_search("classifier", algorithm="eps_greedy", K=1)
    assert torch.equal(remote.images, local.images) and torch.equal(remote.rewards, local.rewards)


def test_a_search_against_the_real_service_equals_the_in_process_one():
    from noisesearch.serving.server import running_verifier

    with running_verifier("classifier") as url:
        remote = tiny_search("remote", {"url": url})
        assert ns.RemoteReward(url).name == "remote:classifier"
    local = tiny_search("classifier")
    assert torch.equal(remote.images, local.images) and torch.equal(remote.rewards, local.rewards)


def test_a_remote_self_supervised_verifier_gets_x0_and_is_refused_by_step_searches():
    ssl = get_reward("ssl_mnist")
    service = StubService(ssl, name="ssl_mnist", x0_sigma=ssl.x0_sigma)
    try:
        remote = tiny_search("remote", {"url": service.url})
        local = tiny_search("ssl_mnist")
        assert torch.equal(remote.images, local.images) and torch.equal(remote.rewards, local.rewards)
        assert service.requests[-1].x0 is not None
        sent = len(service.requests)
        for reward in ("remote", ns.RemoteReward(service.url)):  # by name (built by the api) and as an object
            with pytest.raises(NoiseSearchError, match="eps_greedy cannot use reward 'remote:ssl_mnist'"):
                tiny_search(reward, {"url": service.url} if reward == "remote" else None, algorithm="eps_greedy", K=1)
        assert len(service.requests) == sent  # refused before any score
        denoiser = tiny_denoiser()
        for run, what in [(lambda **kw: ns.calibrate("remote", CalibrationConfig(conditions=2), **kw), "calibration"),
                          (lambda **kw: measure_reliability(["remote"], 2, **kw), "measuring reliability")]:
            with pytest.raises(NoiseSearchError, match=f"^{what} scores intermediate states, but reward "
                                                       "'remote:ssl_mnist'"):
                run(reward_args={"url": service.url}, denoiser=denoiser, steps=4)
        assert len(service.requests) == sent
    finally:
        service.stop()


def test_concurrent_callers_lose_nothing(classifier_stub):
    reward = ns.RemoteReward(classifier_stub.url)
    local = get_reward("classifier")
    calls = [(images(4, seed=s), torch.arange(4) + s % 6) for s in range(32)]
    got: dict[int, torch.Tensor] = {}

    def client(k: int) -> None:
        for s in range(k, len(calls), 4):
            got[s] = reward(*calls[s])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(32))
    assert all(torch.equal(got[s], local(*calls[s])) for s in range(32))


@pytest.fixture
def held_stub():
    """A stub service in a process of its own that answers one score request and holds the next."""
    proc = subprocess.Popen([sys.executable, str(STUB), "--hold-after", "1"], stdout=subprocess.PIPE, text=True)
    yield proc, int(proc.stdout.readline().split()[1])
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_service_killed_mid_search_fails_the_sample_and_records_nothing(held_stub, tmp_path, capsys):
    proc, port = held_stub

    held = []

    def kill_when_held() -> None:
        if proc.stdout.readline().strip() == "holding":
            held.append(True)
            proc.kill()  # by its PID, with a request in flight

    killer = threading.Thread(target=kill_when_held)
    killer.start()
    out = tmp_path / "run"
    code = main(["sample", "--algorithm", "eps_greedy", "--N", "2", "--K", "1", "--steps", "4", "--labels", "3",
                 "--reward", "remote", "--reward-arg", f"url=http://127.0.0.1:{port}", "--reward-arg", "retries=1",
                 "--reward-arg", "backoff=0.05", "--reward-arg", "timeout=30", "--evaluator", "none", "--no-progress",
                 "--out", str(out)])
    proc.kill()  # (where it never held, so that the reader ends)
    killer.join()
    assert held == [True]
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert f"remote reward: http://127.0.0.1:{port}/v1/score " in err and "after 2 tries" in err  # killed, then down
    assert not (out / "result.json").exists()


def test_a_bench_cell_whose_verifier_failed_is_not_written_and_reruns(tmp_path):
    port = free_port()
    preset = Preset.from_dict("remote", {
        "runs": [{"algorithm": "best_of_n", "params": {"N": 2}}], "labels": 2, "steps": 3,
        "rewards": [{"name": "remote", "reward": "remote",
                     "reward_args": {"url": f"http://127.0.0.1:{port}", "retries": 0}}]})
    out = tmp_path / "bench"
    with pytest.raises(NoiseSearchError, match=r"1 of 1 cells failed.*no verifier service answers.*rerun the "
                                               "command to retry"):
        run_bench(preset, out, progress=False, model_loader=tiny_denoiser)
    assert read_results(out / "results.jsonl") == []
    assert json.loads((out / "cells.jsonl").read_text().splitlines()[-1])["status"] == "failed"
    service = StubService(brightness, name="brightness", port=port)
    try:
        records = read_results(run_bench(preset, out, progress=False, model_loader=tiny_denoiser))
    finally:
        service.stop()
    assert [r["label_index"] for r in records] == [0, 1] and len(service.requests) == 1
    assert json.loads(records[0]["cell"])["reward_args"] == {"url": f"http://127.0.0.1:{port}", "retries": 0}


def test_a_preset_checks_its_columns_reward_args_and_keys_name_them_only_where_given():
    def preset(**column):
        return Preset.from_dict("p", {"runs": [{"algorithm": "naive"}], "labels": 1,
                                      "rewards": [{"name": "c", "reward": "remote", **column}]})

    with pytest.raises(NoiseSearchError, match="^preset 'p', reward column 'c': reward 'remote' takes no argument "
                                               "nope; it takes: url, timeout"):
        preset(reward_args={"nope": 1})
    with pytest.raises(NoiseSearchError, match="\"reward_args\" must be a JSON object"):
        preset(reward_args="url=x")
    plain = preset().rewards[0]
    assert plain.reward_args == {} and plain.identity == {"reward": "remote", "guidance": 1.0}
