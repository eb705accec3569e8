"""A stub verifier service for the remote reward's tests: it speaks noisesearch-verifier/1 over http.server on
127.0.0.1 and misbehaves on demand. In a thread (StubService, wrapping any reward object), or as a process of its
own (`python tests/verifier_stub.py [--reward NAME] [--hold-after K]`: serves a registered reward, else the mean
brightness, prints `port P` when it listens and, with --hold-after, `holding` when request K+1 arrives, which it
then never answers), so that a test can kill it by its PID and a benchmark can be smoke-run against it."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch


def load_protocol() -> Any:
    """noisesearch.verifier_protocol loaded from its file (it imports only torch and safetensors), as an isolated
    environment's shim carries a copy: a stub process then starts without importing the whole package."""
    path = Path(__file__).parents[1] / "src" / "noisesearch" / "verifier_protocol.py"
    spec = importlib.util.spec_from_file_location("stub_verifier_protocol", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = load_protocol()
HEALTH_PATH, PROTOCOL, SCORE_PATH = protocol.HEALTH_PATH, protocol.PROTOCOL, protocol.SCORE_PATH

MODES = ("ok", "shuffle", "wrong_ids", "wrong_count", "nan", "non_json", "fail", "too_large")


class StubService:
    """Serves `reward` (a reward object, e.g. get_reward("classifier")) on a free port of 127.0.0.1 until stop().
    `mode` (one of MODES) bends every answer; `busy` answers that many requests with 503 first; `delay` sleeps
    before each answer; `requests` lists the score requests received, `health_checks` counts the health requests;
`health` overrides health fields."""

    def __init__(self, reward: Callable[..., torch.Tensor], name: str = "stub", port: int = 0, **health: Any) -> None:
        self.reward, self.mode, self.busy, self.delay = reward, "ok", 0, 0.0
        self.requests: list[Any] = []
        self.health_checks = 0
        self.health = {"protocol": PROTOCOL, "reward": name, "version": "1", "device": "cpu",
                       "max_request_images": None, "x0_sigma": None, "set_level": False, "takes_prompts": False,
                       **health}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """The status and body answering a score request."""
        try:
            request = protocol.decode_request(body)
        except protocol.ProtocolError as err:
            return 400, json.dumps({"error": str(err)}).encode()
        with self.lock:
            self.requests.append(request)
            busy, self.busy = self.busy > 0, max(0, self.busy - 1)
        if busy:
            return 503, json.dumps({"error": "busy: the queue is full, retry later"}).encode()
        time.sleep(self.delay)
        if self.mode == "non_json":
            return 200, b"<html>not json</html>"
        if self.mode == "fail":
            return 500, json.dumps({"error": "the reward failed: boom"}).encode()
        if self.mode == "too_large":
            return 413, json.dumps({"error": f"{len(request.ids)} images are over max_request_images 2"}).encode()
        cond = torch.tensor([c if isinstance(c, int) else 0 for c in request.conditions])
        scores = [float(s) for s in self.reward(request.images, cond, *([] if request.x0 is None else [request.x0]))]
        ids = list(request.ids)
        if self.mode == "shuffle":
            ids, scores = ids[::-1], scores[::-1]
        elif self.mode == "wrong_ids":
            ids = [i + "x" for i in ids]
        elif self.mode == "wrong_count":
            ids, scores = ids[:-1], scores[:-1]
        elif self.mode == "nan":
            scores[0] = math.nan
        reply = protocol.ScoreReply(ids, scores, self.health["reward"], self.health["version"])
        return 200, json.dumps(protocol.encode_reply(reply)).encode()


def handler(service: StubService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            if self.path == HEALTH_PATH:
                service.health_checks += 1
                self.send(200, json.dumps(service.health).encode())
            else:
                self.send(404, b'{"error": "no such path"}')

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send(*(service.answer(body) if self.path == SCORE_PATH else (404, b'{"error": "no such path"}')))

        def send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    return Handler


def brightness(images: torch.Tensor, cond: torch.Tensor, *x0: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(1, 2, 3))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reward", default="", help="a registered reward to serve (default: mean brightness)")
    parser.add_argument("--hold-after", type=int, default=-1, help="answer this many score requests, then hold")
    args = parser.parse_args()
    if args.reward:
        from noisesearch import get_reward  # the whole package, only where a registered reward is served

        served = get_reward(args.reward)
    else:
        served = brightness
    answered = []

    def hold_after(images: torch.Tensor, cond: torch.Tensor, *x0: torch.Tensor) -> torch.Tensor:
        answered.append(len(images))
        if len(answered) > args.hold_after >= 0:
            print("holding", flush=True)
            time.sleep(3600)
        return served(images, cond, *x0)

    service = StubService(hold_after, name=args.reward or "brightness")
    print(f"port {service.port}", flush=True)
    service.thread.join()


if __name__ == "__main__":
    sys.exit(main())
