"""The verifier service over HTTP: one registered reward behind FastAPI routes on uvicorn.

Why this stack: FastAPI on uvicorn (starlette underneath) is the well-kept ASGI stack, and the one feature a model
serving framework would add here, micro-batching, is under a hundred lines of asyncio (noisesearch.serving.microbatch);
LitServe would bring a framework of its own for that one feature. The same endpoint runs in Ray Serve replicas
for larger runs (noisesearch.serving.ray_serve). Protocol and knobs: docs/verifier-service.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from noisesearch.assets import first_line
from noisesearch.errors import NoiseSearchError
from noisesearch.serving.config import DEFAULT_HOST, DEFAULT_PORT, Limits
from noisesearch.serving.endpoint import Endpoint
from noisesearch.serving.service import VerifierService, check_servable
from noisesearch.verifier_protocol import HEALTH_PATH, SCORE_PATH

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def make_app(endpoint: Endpoint) -> FastAPI:
    """The ASGI app: POST SCORE_PATH and GET HEALTH_PATH answered by `endpoint`, closed with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await endpoint.close()

    app = FastAPI(title="noisesearch verifier", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route(SCORE_PATH, endpoint.score, methods=["POST"], response_model=None)
    app.add_api_route(HEALTH_PATH, endpoint.health, methods=["GET"], response_model=None)
    return app


class Server(uvicorn.Server):
    """uvicorn's server that calls `on_ready()` once it listens, and on SIGTERM or SIGINT stops gracefully (the
    requests in flight are answered) and returns, without raising the signal again as uvicorn's own does."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one), or a one-line NoiseSearchError (checked before the
    reward loads). Made with proto IPPROTO_TCP, which its accepted connections inherit: asyncio sets TCP_NODELAY
    only on such sockets, and without it a kept-alive connection waits out the client's delayed ACK (40 ms) between
    a reply's header and body writes (measured: 44 ms per health check on loopback, 1.5 ms with it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        return sock
    except (OSError, OverflowError) as err:
        sock.close()
        raise NoiseSearchError(f"cannot listen on {host}:{port} ({getattr(err, 'strerror', None) or first_line(err)})"
                               ": choose another --host or --port") from None


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_service(name: str, reward_args: Mapping[str, str] | None, device: str, limits: Limits) -> None:
    """The one-line errors a service start must give before anything loads or listens."""
    limits.check()
    check_servable(name, reward_args or {}, device)


def build_server(name: str, reward_args: Mapping[str, str] | None, host: str, port: int, device: str,
                 limits: Limits, on_ready: Callable[[str], None]) -> tuple[Server, socket.socket]:
    """The checked, listening, loaded service: a uvicorn server and its socket; `on_ready(url)` once it serves."""
    check_service(name, reward_args, device, limits)
    sock = listen(host, port)
    try:
        endpoint = Endpoint(VerifierService(name, reward_args, device), limits)
    except BaseException:
        sock.close()
        raise
    url = url_of(host, sock.getsockname()[1])
    config = uvicorn.Config(make_app(endpoint), log_level="warning", access_log=False, lifespan="on")
    return Server(config, lambda: on_ready(url)), sock


def serve_verifier(name: str, reward_args: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST,
                   port: int = DEFAULT_PORT, device: str = "cpu", limits: Limits | None = None,
                   on_ready: Callable[[str], None] = print) -> None:
    """Serve reward `name` (built once with `reward_args`, strings parsed as for --reward-arg) on host:port until
    SIGTERM or SIGINT; `on_ready(url)` once it answers."""
    server, sock = build_server(name, reward_args, host, port, device, limits or Limits(), on_ready)
    with sock:
        asyncio.run(server.serve(sockets=[sock]))


@contextlib.contextmanager
def running_verifier(name: str, reward_args: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST,
                     port: int = 0, device: str = "cpu", limits: Limits | None = None) -> Iterator[str]:
    """The service of reward `name` in a thread of this process (e.g. for tests and benchmarks, on a free port by
    default): yields its URL once it answers, and stops it at the end of the block."""
    ready = threading.Event()
    found: list[str] = []
    server, sock = build_server(name, reward_args, host, port, device, limits or Limits(),
                                lambda url: (found.append(url), ready.set()))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), name="verifier", daemon=True)
    with sock:
        thread.start()
        try:
            while not ready.wait(0.05):
                if not thread.is_alive():
                    raise NoiseSearchError(f"the verifier service of reward '{name}' stopped before it answered")
            yield found[0]
        finally:
            server.should_exit = True
            thread.join()
