"""`noisesearch demo`: a local web app on the embedded models. Pick a digit, a reward, an algorithm and a budget;
watch the search (NFE bar, the best image of the latest scoring, the reward curve) beside naive sampling at the
same seed.

Why FastAPI on uvicorn rather than Gradio: the verifier service already runs on that stack (`serving.server`,
whose uvicorn server and listening socket the demo reuses), so the demo adds no package, and its page is one
file of HTML and JavaScript with no CDN (it opens offline). One search runs at a time, in a thread; the page
polls `GET /api/run`. A search whose estimate (NFE × the seconds one network call of one row takes, measured
at start) is over `max_seconds` is refused unless the request confirms it.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
import time
from importlib import resources
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from noisesearch import cost
from noisesearch.api import search
from noisesearch.backends.embedded import load_model
from noisesearch.errors import NoiseSearchError
from noisesearch.imaging import png_bytes, to_uint8
from noisesearch.progress import ProgressEvent
from noisesearch.rewards import get_reward
from noisesearch.search import get_algorithm
from noisesearch.serving.server import Server, listen, url_of

REWARDS = ("classifier", "brightness", "compressibility")
ALGORITHMS = ("best_of_n", "eps_greedy", "adaptive_eps_greedy")
BACKENDS = ("embedded", "embedded_flow")
MAX_NFE = 100_000  # per image: beyond it no estimate is worth confirming


def png_base64(image: torch.Tensor) -> str:
    """An image (channels, H, W) in [-1, 1] as base64 PNG."""
    return base64.b64encode(png_bytes(to_uint8(image[None])[0])).decode()


class Watched:
    """A reward that reports the best image and score of every call it scores (what the page shows live)."""

    def __init__(self, reward: Any, seen: Any) -> None:
        self.reward, self.seen, self.name = reward, seen, getattr(reward, "name", "reward")

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scores = self.reward(images, cond)
        best = int(scores.argmax())
        self.seen(images[best], float(scores[best]))
        return scores


class Demo:
    """The app's state: the loaded models, the measured seconds per NFE and the one search that may run."""

    def __init__(self, max_seconds: float = 180.0) -> None:
        self.max_seconds = max_seconds
        self.denoisers = {b: load_model(kind="diffusion" if b == "embedded" else "flow") for b in BACKENDS}
        self.seconds_per_nfe = {b: self.time_call(d) for b, d in self.denoisers.items()}
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"status": "idle"}

    @staticmethod
    def time_call(denoiser: Any) -> float:
        x, sigma, cond = torch.zeros(1, *denoiser.image_shape), torch.ones(1), torch.zeros(1, dtype=torch.long)
        denoiser(x, sigma, cond)
        start = time.perf_counter()
        for _ in range(3):
            denoiser(x, sigma, cond)
        return (time.perf_counter() - start) / 3

    def plan(self, request: dict[str, Any]) -> dict[str, Any]:
        """The checked request and the algorithm's parameters for its budget (one-line NoiseSearchErrors)."""
        label, seed, nfe = request.get("label"), request.get("seed", 0), request.get("nfe")
        reward, algorithm = request.get("reward"), request.get("algorithm")
        backend = request.get("backend", "embedded")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 9:
            raise NoiseSearchError(f"label must be a digit 0-9, got {label!r}")
        if reward not in REWARDS or algorithm not in ALGORITHMS or backend not in BACKENDS:
            raise NoiseSearchError(f"choose a reward of {', '.join(REWARDS)}, an algorithm of {', '.join(ALGORITHMS)} "
                                   f"and a backend of {', '.join(BACKENDS)}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
            raise NoiseSearchError(f"seed must be an integer from 0 to 2^31 - 1, got {seed!r}")
        sampler = self.denoisers[backend].default_sampler()
        naive = cost.trajectory_calls(sampler)
        if not isinstance(nfe, int) or isinstance(nfe, bool) or not 2 * naive <= nfe <= MAX_NFE:
            raise NoiseSearchError(f"the budget must be an integer NFE per image from {2 * naive} (two trajectories) "
                                   f"to {MAX_NFE:,}, got {nfe!r}")
        params = self.params(algorithm, nfe, sampler)
        return {"label": label, "seed": seed, "reward": reward, "algorithm": algorithm, "backend": backend,
                "nfe": nfe, "params": params, "estimate_s": nfe * self.seconds_per_nfe[backend]}

    @staticmethod
    def params(algorithm: str, nfe: int, sampler: Any) -> dict[str, Any]:
        if algorithm == "best_of_n":
            return {"N": max(1, nfe // cost.trajectory_calls(sampler))}
        if algorithm == "adaptive_eps_greedy":
            return {"target_nfe": nfe}
        k = 1  # eps_greedy (N = 4): the most iterations per searched step within the budget
        while get_algorithm("eps_greedy", N=4, K=k + 1).nfe_formula(sampler) <= nfe:
            k += 1
        return {"N": 4, "K": k}

    def start(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Start a search: (200, its plan), or (400, error) for a bad request, (409, error) when one runs or the
        estimate needs confirming."""
        try:
            plan = self.plan(request)
        except NoiseSearchError as err:
            return 400, {"error": str(err)}
        if plan["estimate_s"] > self.max_seconds and request.get("confirm") is not True:
            return 409, {"error": f"this search would take about {plan['estimate_s'] / 60:.1f} minutes (over "
                                  f"{self.max_seconds / 60:g}): send confirm=true to run it anyway"}
        if not self.lock.acquire(blocking=False):
            return 409, {"error": "a search is running: wait for it to end"}
        self.state = {"status": "running", "plan": plan, "nfe": 0, "expected": plan["nfe"], "curve": [],
                      "best": None, "naive": None, "result": None}
        threading.Thread(target=self.run, args=(plan,), daemon=True, name="demo search").start()
        return 200, plan

    def run(self, plan: dict[str, Any]) -> None:
        state = self.state
        try:
            common = {"labels": [plan["label"]], "seed": plan["seed"], "denoiser": self.denoisers[plan["backend"]]}
            naive = search(algorithm="naive", reward=plan["reward"], **common)
            state["naive"] = {"image": png_base64(naive.images[0]), "reward": float(naive.rewards[0]),
                              "evaluator": float(naive.evaluator_rewards[0])}

            def seen(image: torch.Tensor, score: float) -> None:
                state["best"] = {"image": png_base64(image), "score": score}
                state["curve"].append([state["nfe"], score])

            def progress(event: ProgressEvent) -> None:
                if event.kind == "nfe":
                    state["nfe"] += event.nfe

            reward = Watched(get_reward(plan["reward"]), seen)
            result = search(algorithm=plan["algorithm"], reward=reward, progress=progress, **common,
                               **plan["params"])
            state["result"] = {"image": png_base64(result.images[0]), "reward": float(result.rewards[0]),
                               "evaluator": float(result.evaluator_rewards[0]), "nfe": int(result.nfe[0]),
                               "seconds": round(result.wall_time, 2)}
            state["status"] = "done"
        except Exception as err:  # the page shows what failed, on one line
            state["status"], state["error"] = "failed", f"{type(err).__name__}: {err}".splitlines()[0]
        finally:
            self.lock.release()

    def snapshot(self) -> dict[str, Any]:
        state = dict(self.state)
        if "curve" in state:
            state["curve"] = [p for p in state["curve"] if math.isfinite(p[1])]
        return state


def make_app(demo: Demo) -> FastAPI:
    page = resources.files("noisesearch.demo").joinpath("page.html").read_text()
    app = FastAPI(title="noisesearch demo", docs_url=None, redoc_url=None)

    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    async def start(request: dict[str, Any]) -> JSONResponse:
        status, body = demo.start(request)
        return JSONResponse(body, status_code=status)

    async def status() -> JSONResponse:
        return JSONResponse(demo.snapshot())

    async def options() -> JSONResponse:
        return JSONResponse({"rewards": REWARDS, "algorithms": ALGORITHMS, "backends": BACKENDS,
                             "seconds_per_nfe": demo.seconds_per_nfe, "max_seconds": demo.max_seconds})

    app.add_api_route("/", index, methods=["GET"])
    app.add_api_route("/api/run", start, methods=["POST"])
    app.add_api_route("/api/run", status, methods=["GET"])
    app.add_api_route("/api/options", options, methods=["GET"])
    return app


def serve_demo(host: str = "127.0.0.1", port: int = 7860, max_seconds: float = 180.0) -> None:
    """Serve the demo on host:port until SIGTERM or SIGINT."""
    sock = listen(host, port)
    with sock:
        demo = Demo(max_seconds)
        url = url_of(host, sock.getsockname()[1])
        config = uvicorn.Config(make_app(demo), log_level="warning", access_log=False)
        server = Server(config, lambda: print(f"noisesearch demo at {url} (Ctrl-C to stop)", flush=True))
        asyncio.run(server.serve(sockets=[sock]))
