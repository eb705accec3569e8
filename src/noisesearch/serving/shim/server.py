"""The serving shim of an isolated verifier environment: serves one adapter over noisesearch-verifier/1
(`POST /v1/score`, `GET /v1/health`) on the standard library's threading HTTP server.

Run as a script inside the environment, beside its copies of verifier_protocol.py and adapters/; it imports only
the standard library, torch, safetensors and its adapter, never noisesearch (whose torch may differ). The standard
library's server rather than FastAPI/uvicorn: the shim must add no package to an environment whose pins belong to
the verifier (t2v-metrics pins httpx and pydantic itself), and one model scores one batch at a time anyway: a lock
serializes scoring, a bounded count of waiting requests answers 503 past it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch
import verifier_protocol as vp


class Verifier:
    """One adapter's scorer, loaded once, called by one request at a time."""

    def __init__(self, adapter: str, weights: dict[str, str], device: str, max_waiting: int) -> None:
        module = importlib.import_module(f"adapters.{adapter}")
        self.name, self.device = adapter, device
        package = f"{module.PACKAGE}=={importlib.metadata.version(module.PACKAGE)}"
        self.version = " ".join([package, *(Path(weights[key]).name for key in sorted(weights))])
        with torch.inference_mode():
            self.score_fn = module.load(weights, device)
        self.lock = threading.Lock()
        self.waiting = threading.BoundedSemaphore(max_waiting)

    def health(self) -> dict[str, Any]:
        return {"protocol": vp.PROTOCOL, "status": "ok", "reward": self.name, "version": self.version,
                "device": self.device, "x0_sigma": None, "set_level": False, "scoring_only": False,
                "takes_prompts": True}  # the traits a remote reward reads: every adapter scores image-prompt pairs

    def score(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON answer to a score request's body."""
        try:
            request = vp.decode_request(body)
        except vp.ProtocolError as err:
            return 400, {"error": str(err)}
        if not all(isinstance(c, str) for c in request.conditions):
            return 400, {"error": f"verifier {self.name} scores images against prompts: every condition must be a "
                                  "prompt (str)"}
        if not self.waiting.acquire(blocking=False):
            return 503, {"error": f"verifier {self.name} is busy: retry later"}
        try:
            with self.lock, torch.inference_mode():
                scores = torch.as_tensor(self.score_fn(request.images, request.conditions)).reshape(-1).tolist()
        except Exception as err:  # the verifier's own failure, reported on one line
            return 500, {"error": f"verifier {self.name} failed: {vp.first_line(err)}"}
        finally:
            self.waiting.release()
        if len(scores) != len(request.ids) or not all(math.isfinite(s) for s in scores):
            return 500, {"error": f"verifier {self.name} returned {len(scores)} scores for {len(request.ids)} "
                                  "images, or a score that is not finite"}
        return 200, vp.encode_reply(vp.ScoreReply(request.ids, scores, self.name, self.version))


def handler(verifier: Verifier, max_body: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path != vp.HEALTH_PATH:
                return self.answer(404, {"error": f"no such path {self.path}: use {vp.HEALTH_PATH}"})
            self.answer(200, verifier.health())

        def do_POST(self) -> None:  # noqa: N802
            if self.path != vp.SCORE_PATH:
                return self.answer(404, {"error": f"no such path {self.path}: use {vp.SCORE_PATH}"})
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                return self.answer(411, {"error": "a score request needs a Content-Length"})
            if int(length) > max_body:
                self.close_connection = True
                return self.answer(413, {"error": f"the request's {length} bytes exceed the limit of {max_body}"})
            self.answer(*verifier.score(self.rfile.read(int(length))))

        def answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            """Quiet: the shim prints its address once and each failure's answer reaches the client."""

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--weights", default="{}", help="JSON object: weight name -> local path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port, printed when serving")
    parser.add_argument("--max-waiting", type=int, default=8, help="requests scored or waiting before 503 busy")
    parser.add_argument("--max-body", type=int, default=512 * 2**20, help="largest request in bytes (else 413)")
    parser.add_argument("--check", action="store_true", help="import the adapter's packages and exit")
    args = parser.parse_args(argv)
    if args.check:
        module = importlib.import_module(f"adapters.{args.adapter}")
        for name in module.IMPORTS:
            importlib.import_module(name)
        print(f"{args.adapter}: {module.PACKAGE}=={importlib.metadata.version(module.PACKAGE)}, torch "
              f"{torch.__version__}")
        return 0
    verifier = Verifier(args.adapter, json.loads(args.weights), args.device, args.max_waiting)
    server = ThreadingHTTPServer((args.host, args.port), handler(verifier, args.max_body))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # stop cleanly: serve_forever ends, port freed
    host, port = server.server_address[:2]
    print(f"serving {verifier.name} ({verifier.version}) on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
