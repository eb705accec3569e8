"""Ray Serve placement of the verifier service, for runs that outgrow one machine or one GPU.

The same endpoint (noisesearch.serving.endpoint) runs in `replicas` Ray Serve replicas of `gpus_per_replica` GPUs
each (Ray's `num_gpus`: 1 gives one GPU per replica), behind Ray Serve's HTTP proxy on host:port; each replica
builds the reward once where it runs and micro-batches its own requests. Ray is the cluster at `ray_address`, or
else a local instance started here (and stopped at the end). Ray is imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from noisesearch.assets import first_line
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import check_count, check_reachable, collapse_whitespace, import_ray
from noisesearch.serving.config import DEFAULT_HOST, DEFAULT_PORT, Limits
from noisesearch.serving.endpoint import Endpoint, error
from noisesearch.serving.server import STOP_SIGNALS, check_service, url_of
from noisesearch.serving.service import VerifierService
from noisesearch.verifier_protocol import HEALTH_PATH, SCORE_PATH

APP_NAME = "noisesearch-verifier"


class VerifierReplica:
    """One Ray Serve replica: the reward, its batcher and the endpoint, built where the replica runs."""

    def __init__(self, name: str, reward_args: Mapping[str, str], device: str, limits: Limits,
                 placement: dict[str, Any]) -> None:
        self.endpoint = Endpoint(VerifierService(name, reward_args, device), limits, placement)

    async def __call__(self, request: Request) -> JSONResponse:
        route = (request.method, request.url.path.rstrip("/"))
        if route == ("POST", SCORE_PATH):
            return await self.endpoint.score(request)
        if route == ("GET", HEALTH_PATH):
            return await self.endpoint.health()
        return error(404, f"no {request.method} {request.url.path} here: the service answers POST {SCORE_PATH} and "
                          f"GET {HEALTH_PATH}")


def import_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise NoiseSearchError('--placement ray needs Ray Serve: pip install "noisesearch[serve-ray]"') from None
    return serve


def serve_verifier_ray(name: str, reward_args: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST,
                       port: int = DEFAULT_PORT, device: str = "cpu", limits: Limits | None = None,
                       replicas: int = 1, gpus_per_replica: float = 0.0, ray_address: str | None = None,
                       on_ready: Callable[[str], None] = print) -> None:
    """Serve reward `name` from `replicas` Ray Serve replicas (see running_verifier_ray) until SIGTERM or SIGINT;
    `on_ready(url)` once every replica answers."""
    with running_verifier_ray(name, reward_args, host=host, port=port, device=device, limits=limits,
                              replicas=replicas, gpus_per_replica=gpus_per_replica, ray_address=ray_address) as url:
        on_ready(url)
        wait_for_stop()


@contextlib.contextmanager
def running_verifier_ray(name: str, reward_args: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST,
                         port: int = DEFAULT_PORT, device: str = "cpu", limits: Limits | None = None,
                         replicas: int = 1, gpus_per_replica: float = 0.0, ray_address: str | None = None
                         ) -> Iterator[str]:
    """The service of reward `name` in `replicas` Ray Serve replicas of `gpus_per_replica` GPUs each on host:port:
    yields its URL once every replica answers, and removes it at the end of the block. Ray is the instance this
    process is connected to, else the cluster at `ray_address`, else a new local one; a Ray instance started here is
    stopped at the end, one joined keeps running (only this service's application leaves it)."""
    limits = limits or Limits()
    check_service(name, reward_args, device, limits)
    check_count(replicas, "--replicas", 1)
    if not isinstance(gpus_per_replica, (int, float)) or isinstance(gpus_per_replica, bool) or not (
            0 <= gpus_per_replica < float("inf")):
        raise NoiseSearchError(f"--gpus-per-replica must be a number of at least 0, got {gpus_per_replica}")
    ray, serve = import_ray(), import_serve()
    started = not ray.is_initialized()
    if started:
        check_reachable(ray_address)
        try:
            ray.init(address=ray_address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise NoiseSearchError(collapse_whitespace(
                f"cannot start or reach Ray at {ray_address or 'this machine'}: {err}")) from None
    try:
        have = ray.cluster_resources().get("GPU", 0)
        if replicas * gpus_per_replica > have:
            raise NoiseSearchError(f"{replicas} replicas of {gpus_per_replica} GPUs need {replicas * gpus_per_replica}"
                                   f" GPUs, but the Ray cluster has {have:g}: lower --replicas or --gpus-per-replica")
        placement = {"placement": "ray", "replicas": replicas, "gpus_per_replica": gpus_per_replica}
        deployment = serve.deployment(VerifierReplica, name="verifier", num_replicas=replicas,
                                      ray_actor_options={"num_gpus": gpus_per_replica},
                                      max_ongoing_requests=limits.max_queue + limits.max_batch,
                                      logging_config={"log_level": "WARNING", "enable_access_log": False})
        try:
            serve.start(http_options={"host": host, "port": port})
            serve.run(deployment.bind(name, dict(reward_args or {}), device, limits, placement), name=APP_NAME,
                      route_prefix="/")
        except Exception as err:  # Ray Serve raises several types for a replica that cannot start
            raise NoiseSearchError(collapse_whitespace(f"the Ray Serve verifier did not start: {first_line(err)}")
                                   ) from None
        yield url_of(host, port)
    finally:
        if started:
            serve.shutdown()
            ray.shutdown()
        else:
            serve.delete(APP_NAME)


def wait_for_stop() -> None:
    """Return once SIGTERM or SIGINT arrives (the previous handlers are restored)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        while not stop.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
