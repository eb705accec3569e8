"""flow_grpo_server and vlm_judge against stub servers on 127.0.0.1 (free ports, started and stopped by each test):
the Flow-GRPO reward server as yifan123/reward-server's app_deqa.py answers, and an OpenAI-compatible chat server
that returns fixed log-probabilities."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import pickle
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from loopback import free_port
from PIL import Image

from noisesearch import get_reward
from noisesearch.errors import NoiseSearchError
from noisesearch.imaging import to_uint8
from noisesearch.rewards.flow_grpo_server import jpeg_bytes
from noisesearch.rewards.registry import make_reward

# (path, body, headers) -> (status, body) of a POST, or None to close the connection unanswered (a worker killed)
Handle = Callable[[str, bytes, dict], tuple[int, bytes] | None]


class StubServers:
    """Stub servers on free loopback ports: `serve(handle, get) -> base URL` starts one (`handle` answers POSTs,
    `get` GETs: 405 by default, as Flask answers a GET on a POST-only route); `stop(url)` stops one (a service
    killed mid-search); `close()` stops the rest."""

    def __init__(self) -> None:
        self.servers: dict[str, tuple[ThreadingHTTPServer, threading.Thread]] = {}

    def __call__(self, handle: Handle, get: Callable[[str], tuple[int, bytes]] = lambda path: (405, b"")) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer(*get(self.path))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = handle(self.path, body, dict(self.headers))
                if reply is not None:
                    self.answer(*reply)

            def answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}"
        self.servers[url] = (server, thread)
        return url

    def stop(self, url: str) -> None:
        server, thread = self.servers.pop(url)
        server.shutdown()
        server.server_close()
        thread.join()

    def close(self) -> None:
        for url in list(self.servers):
            self.stop(url)


@pytest.fixture
def serve() -> Iterator[StubServers]:
    stubs = StubServers()
    yield stubs
    stubs.close()


def images(n: int, channels: int = 3, size: int = 8) -> torch.Tensor:
    """n images of distinct brightness with some texture, in [-1, 1]."""
    torch.manual_seed(0)
    base = torch.linspace(-0.8, 0.8, n).view(n, 1, 1, 1)
    return (base + 0.1 * torch.randn(n, channels, size, size)).clamp(-1, 1)


def one_line_error(call: Callable[[], object]) -> str:
    with pytest.raises(NoiseSearchError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# ---- the Flow-GRPO / ddpo reward server ----

def mean_brightness(image: Image.Image) -> float:
    return float(np.asarray(image.convert("RGB"), dtype=np.float64).mean() / 255)


def reward_server(received: list, score: Callable[[list, dict], object] | None = None, key: str = "outputs"
                  ) -> Handle:
    """The server side of app_deqa.py: unpickle the body, open each JPEG, answer a pickled dict, or 500 with the
    traceback. Default scores: each image's mean brightness as the server decodes it."""
    def handle(path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        received.append((path, headers))
        try:
            data = pickle.loads(body)
            decoded = [Image.open(io.BytesIO(d), formats=["jpeg"]) for d in data["images"]]
            received[-1] = (path, headers, data)
            outputs = score(decoded, data) if score else [mean_brightness(im) for im in decoded]
            return 200, pickle.dumps({key: outputs})
        except Exception:
            return 500, traceback.format_exc().encode("utf-8")
    return handle


def test_flow_grpo_server_sends_jpegs_and_prompts_in_batches_and_keeps_their_order(serve):
    received = []
    url = serve(reward_server(received))
    prompts = ["a cat", "a dog", "a red cube"]
    cond = torch.tensor([2, 0, 1, 1, 0])
    x = images(5)
    reward = get_reward("flow_grpo_server", url=url, prompts=prompts, batch_size=2, extra={"only_strict": False})
    scores = reward(x, cond)
    pixels = to_uint8(x)
    expected = [mean_brightness(Image.open(io.BytesIO(jpeg_bytes(p, 75)))) for p in pixels]
    assert torch.equal(scores, torch.tensor(expected, dtype=torch.float32))
    assert [len(data["images"]) for _, _, data in received] == [2, 2, 1]
    assert [p for _, _, data in received for p in data["prompts"]] == [prompts[i] for i in cond.tolist()]
    assert all(path == "/" and data["only_strict"] is False for path, _, data in received)
    first = np.asarray(Image.open(io.BytesIO(received[0][2]["images"][0])), dtype=np.float64)
    assert abs(first.mean() - pixels[0].mean()) < 2  # the JPEG holds the image (lossy, quality 75)
    assert scores.argsort().tolist() == [0, 1, 2, 3, 4]  # brightness rises with the index


def test_flow_grpo_server_reads_numpy_replies_and_one_channel_images(serve):
    received = []
    url = serve(reward_server(received, lambda ims, _: np.arange(len(ims), dtype=np.float32)[:, None] / 4,
                              key="recall"))
    scores = get_reward("flow_grpo_server", url=url, score_key="recall")(images(3, channels=1), None)
    assert scores.tolist() == [0.0, 0.25, 0.5]  # (N, 1) float32 array, as LLaVA-server's recall
    assert "prompts" not in received[0][2]
    assert Image.open(io.BytesIO(received[0][2]["images"][0])).mode == "RGB"


class Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.remove, (self.path,)


def test_flow_grpo_server_refuses_a_reply_that_would_run_code(serve, tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("still here")
    url = serve(lambda path, body, headers: (200, pickle.dumps({"outputs": [Exploit(str(canary))]})))
    message = one_line_error(lambda: get_reward("flow_grpo_server", url=url)(images(1), None))
    assert "no safe pickle" in message and "remove" in message and url in message
    assert canary.read_text() == "still here"


@pytest.mark.parametrize("score, words", [
    (lambda ims, _: [0.5], "shape (1,) for 2 images"),
    (lambda ims, _: [0.5, float("nan")], "NaN"),
    (lambda ims, _: ["good", "bad"], "not numbers"),
])
def test_flow_grpo_server_refuses_a_wrong_count_nan_or_text(serve, score, words):
    url = serve(reward_server([], score))
    message = one_line_error(lambda: get_reward("flow_grpo_server", url=url, retries=0)(images(2), None))
    assert words in message and url in message


def test_flow_grpo_server_retries_a_500_and_names_the_servers_last_line(serve):
    received, fails = [], [1]

    def flaky(ims: list, data: dict) -> list:
        if fails[0]:
            fails[0] -= 1
            raise RuntimeError("CUDA out of memory")
        return [0.5] * len(ims)

    url = serve(reward_server(received, flaky))
    assert get_reward("flow_grpo_server", url=url, retries=1, backoff=0)(images(2), None).tolist() == [0.5, 0.5]
    assert len(received) == 2
    message = one_line_error(lambda: get_reward("flow_grpo_server", url=url, score_key="scores", retries=1,
                                                backoff=0)(images(1), None))
    # the stub answers "outputs": the client reads the reply fine and says which key it holds
    assert "has no 'scores'" in message and "['outputs']" in message
    geneval = serve(reward_server([], lambda ims, data: data["only_strict"]))
    message = one_line_error(lambda: get_reward("flow_grpo_server", url=geneval, retries=2, backoff=0)(images(1)))
    assert f"{geneval} answered 500 (KeyError: 'only_strict') after 3 tries" in message


def test_flow_grpo_server_down_stopped_or_slow_is_a_one_line_error_naming_the_url(serve):
    url = f"http://127.0.0.1:{free_port()}"
    message = one_line_error(lambda: get_reward("flow_grpo_server", url=url, retries=1, backoff=0))
    assert url in message and "cannot be reached" in message and "after 2 tries" in message  # before any search
    received = []
    live = serve(reward_server(received))
    reward = get_reward("flow_grpo_server", url=live, retries=1, backoff=0)
    serve.stop(live)  # killed after the reward was built
    message = one_line_error(lambda: reward(images(2)))
    assert live in message and "cannot be reached" in message and received == []
    drops = [1]

    def drop_once(path: str, body: bytes, headers: dict) -> tuple[int, bytes] | None:
        if drops[0]:
            drops[0] -= 1
            return None
        return 200, pickle.dumps({"outputs": [0.25]})

    dropping = serve(drop_once)
    assert get_reward("flow_grpo_server", url=dropping, retries=1, backoff=0)(images(1)).tolist() == [0.25]
    drops[0] = 1
    message = one_line_error(lambda: get_reward("flow_grpo_server", url=dropping, retries=0)(images(1)))
    assert f"{dropping} broke the connection (RemoteProtocolError" in message
    release = threading.Event()

    def slow(path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        release.wait(5)
        return 200, pickle.dumps({"outputs": [1.0]})

    slow_url = serve(slow)
    try:
        message = one_line_error(lambda: get_reward("flow_grpo_server", url=slow_url, timeout=0.2,
                                                    retries=0)(images(1)))
    finally:
        release.set()
    assert slow_url in message and "no answer within 0.2 s after 1 try" in message


def test_flow_grpo_server_checks_its_arguments_before_any_request(serve):
    received = []
    url = serve(reward_server(received))
    assert "needs url=" in one_line_error(lambda: get_reward("flow_grpo_server"))
    assert "extra may not set images" in one_line_error(
        lambda: get_reward("flow_grpo_server", url=url, extra={"images": []}))
    reward = get_reward("flow_grpo_server", url=url, prompts=["a cat"])
    assert "condition 3 has no entry in the 1 prompts" in one_line_error(lambda: reward(images(1), torch.tensor([3])))
    assert received == []


def test_flow_grpo_server_sends_geneval_metadata_from_a_json_lines_file(serve, tmp_path):
    received = []
    url = serve(reward_server(received))
    rows = [{"tag": "single_object", "include": [{"class": "cat", "count": 1}]}, {"tag": "colors"}]
    path = tmp_path / "metadata.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reward = make_reward("flow_grpo_server", url=url, metadata=str(path), extra='{"only_strict": true}')
    reward(images(3), torch.tensor([1, 0, 1]))
    assert received[0][2]["meta_datas"] == [rows[1], rows[0], rows[1]] and received[0][2]["only_strict"] is True


# ---- vlm_judge on an OpenAI-compatible chat server ----

CAT = [("Yes", 0.6), (" yes", 0.1), ("No", 0.2), ("The", 0.05)]
DOG = [("No", 0.7), ("▁no", 0.1), ("Maybe", 0.1)]


def chat_server(received: list, answers: Callable[[str], list | None], delay: Callable[[str], float] = lambda q: 0
                ) -> Handle:
    """An OpenAI-compatible chat server answering one token whose top logprobs `answers(question)` gives."""
    def handle(path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        request = json.loads(body)
        received.append((path, headers, request))
        question = request["messages"][0]["content"][0]["text"]
        threading.Event().wait(delay(question))
        top = answers(question)
        logprobs = None if top is None else {"content": [{"token": top[0][0], "logprob": math.log(top[0][1]),
                                                          "top_logprobs": [{"token": t, "logprob": math.log(p)}
                                                                           for t, p in top]}]}
        reply = {"object": "chat.completion", "model": request["model"],
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": top[0][0] if top else ""},
                              "logprobs": logprobs, "finish_reason": "length"}]}
        return 200, json.dumps(reply).encode()
    return handle


def models(*served: str) -> Callable[[str], tuple[int, bytes]]:
    """GET /v1/models as vLLM answers it."""
    listing = {"object": "list", "data": [{"id": m, "object": "model"} for m in served]}
    return lambda path: (200, json.dumps(listing).encode()) if path == "/v1/models" else (404, b"")


def by_prompt(question: str) -> list:
    return CAT if "a cat" in question else DOG


def test_vlm_judge_scores_p_yes_normalised_and_sends_the_openai_request(serve, monkeypatch):
    received = []
    url = serve(chat_server(received, by_prompt), models("qwen2-vl"))
    monkeypatch.setenv("NS_TEST_KEY", "secret-token")
    x = images(3)
    reward = get_reward("vlm_judge", url=url, model="qwen2-vl", prompts=["a cat", "a dog"], top_logprobs=5,
                        api_key_env="NS_TEST_KEY")
    scores = reward(x, torch.tensor([0, 1, 0]))
    p_cat = (0.6 + 0.1) / (0.6 + 0.1 + 0.2)
    assert scores.tolist() == pytest.approx([p_cat, 0.0, p_cat], rel=1e-6, abs=0)
    assert scores.dtype == torch.float32
    pixels = to_uint8(x)
    for path, headers, request in received:
        assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer secret-token"
        assert (request["model"], request["max_tokens"], request["logprobs"], request["top_logprobs"]) == (
            "qwen2-vl", 1, True, 5)
        text, image = request["messages"][0]["content"]
        assert text["type"] == "text" and text["text"] in {f'Does this figure show "{p}"? Please answer yes or no.'
                                                           for p in ("a cat", "a dog")}
        prefix, data = image["image_url"]["url"].split(",", 1)
        assert prefix == "data:image/png;base64"
        sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
        assert any(np.array_equal(sent, p) for p in pixels)  # lossless: the image exactly
    questions = sorted(r[2]["messages"][0]["content"][0]["text"] for r in received)
    assert [q.split('"')[1] for q in questions] == ["a cat", "a cat", "a dog"]


def test_vlm_judge_t2v_metrics_rule_and_label_questions_in_order_under_concurrency(serve):
    def answers(question: str) -> list:  # label k: P(Yes) = k / 10; label 0: no Yes among the top tokens
        label = int(question[-2])
        return [("Yes", 0.1 * label), ("No", 0.05)] if label else [("no", 0.05), ("The", 0.5)]

    received = []
    # label k is answered after a delay falling with k, so replies come back out of order
    url = serve(chat_server(received, answers, delay=lambda q: 0.05 * (4 - int(q[-2]))), models("m")) + "/v1/"
    reward = get_reward("vlm_judge", url=url, model="m", question="Is this the digit {label}?", concurrency=4,
                        normalise=False)
    scores = reward(images(4, channels=1), torch.tensor([1, 2, 3, 4]))
    assert scores.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4], rel=1e-6)  # p_yes unnormalised
    assert received[0][0] == "/v1/chat/completions"
    assert get_reward("vlm_judge", url=url, model="m", question="Is this a {label}?", normalise=False,
                      )(images(1), torch.tensor([0])).tolist() == [pytest.approx(1 - 0.05, rel=1e-6)]


def test_vlm_judge_refuses_replies_without_logprobs_or_answers(serve):
    url = serve(chat_server([], lambda q: None if "none" in q else [("The", 0.5), ("A", 0.2)]),
                lambda path: (404, b""))  # a server without /v1/models is taken as up
    message = one_line_error(lambda: get_reward("vlm_judge", url=url, model="m", question="none?")(images(1)))
    assert "holds no logprobs" in message and url in message
    reward = get_reward("vlm_judge", url=url, model="m", question="Is it red?")
    message = one_line_error(lambda: reward(images(2)))
    assert "neither Yes nor No among the top 2 tokens ['The', 'A']" in message
    assert get_reward("vlm_judge", url=url, model="m", question="Is it red?", missing=0.5)(images(2)).tolist() == [
        0.5, 0.5]


def test_vlm_judge_down_refusing_or_serving_another_model_is_a_one_line_error(serve):
    url = f"http://127.0.0.1:{free_port()}"
    message = one_line_error(lambda: get_reward("vlm_judge", url=url, model="m", question="q?", retries=1,
                                                backoff=0))
    assert f"{url}/v1/models cannot be reached" in message and "after 2 tries" in message
    other = serve(chat_server([], by_prompt), models("llava", "qwen2-vl"))
    message = one_line_error(lambda: get_reward("vlm_judge", url=other, model="m", question="q?"))
    assert f"{other}/v1/models serves ['llava', 'qwen2-vl'], not model 'm'" in message
    calls = []

    def too_many(path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        calls.append(path)
        return 400, json.dumps({"object": "error", "message": "top_logprobs must be <= 5"}).encode()

    bad = serve(too_many, models("m"))
    message = one_line_error(lambda: get_reward("vlm_judge", url=bad, model="m", question="q?", retries=3)(images(1)))
    assert "answered 400" in message and "top_logprobs must be <= 5" in message and calls == ["/v1/chat/completions"]


def test_vlm_judge_checks_its_arguments_before_any_request(serve, monkeypatch):
    received = []
    url = serve(chat_server(received, by_prompt), models("m"))
    assert "needs model=NAME" in one_line_error(lambda: get_reward("vlm_judge", url=url))
    assert "uses {prompt} but no prompts" in one_line_error(lambda: get_reward("vlm_judge", url=url, model="m"))
    assert "uses {caption}" in one_line_error(lambda: get_reward("vlm_judge", url=url, model="m", question="{caption}"))
    monkeypatch.delenv("NS_UNSET_KEY", raising=False)
    assert "NS_UNSET_KEY names an environment variable that is not set" in one_line_error(
        lambda: get_reward("vlm_judge", url=url, model="m", question="q?", api_key_env="NS_UNSET_KEY"))
    reward = get_reward("vlm_judge", url=url, model="m", prompts=["a cat"])
    assert "condition 1 has no prompt" in one_line_error(lambda: reward(images(1), torch.tensor([1])))
    assert received == []
