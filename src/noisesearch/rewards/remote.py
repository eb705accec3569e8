"""The remote reward: a client of a verifier service (`noisesearch serve-verifier`, wire format
noisesearch.verifier_protocol) that behaves like any reward, so a verifier that cannot share this environment
still guides a search.

Each call sends the images as they are (float32 stays bit-identical to the in-process reward), one condition per
image (its label, or its prompt where the served reward takes prompts) and a fresh id per image, and puts the
scores back in the order sent by matching ids, never by position. Connection errors and "busy" answers (503) are
retried a bounded number of times with exponential backoff; anything else that goes wrong (a timeout, an HTTP
error, a reply that is no JSON, of the wrong count or ids, or with NaN) is a one-line NoiseSearchError naming the
url, so a search never records a result scored by a failed call.

The client is httpx rather than requests: one httpx.Client may be shared by threads (concurrent callers of one
reward), pools its connections and takes its timeouts per phase; it is an optional dependency
(`pip install noisesearch[remote]`).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from noisesearch.assets import first_line
from noisesearch.errors import NoiseSearchError
from noisesearch.files import write_atomically
from noisesearch.rewards.http import Poster, check_url, excerpt
from noisesearch.rewards.registry import register_reward
from noisesearch.verifier_protocol import (
    CONTENT_TYPE,
    HEALTH_PATH,
    PROTOCOL,
    SCORE_PATH,
    Condition,
    ProtocolError,
    ScoreRequest,
    decode_reply,
    encode_request,
)

CACHE_FORMAT = "noisesearch-remote-cache/1"  # in every cache key: a later format never reads these entries


@register_reward("remote")
class RemoteReward:
    """A reward served by a verifier service over HTTP (url=http://HOST:PORT of `noisesearch serve-verifier`)."""

    name = "remote"  # "remote:<served reward>" once built
    set_level = False  # a set-level served reward is refused: its set would live in the service, across searches

    def __init__(self, url: str = "", timeout: float = 60, retries: int = 3, backoff: float = 0.5,
                 cache_dir: Path | None = None, prompts: Sequence[str] = ()) -> None:
        """Ask the service at `url` once for its health (a one-line error if none answers or it speaks another
        protocol) and take the served reward's name, version and traits: its `x0_sigma` where it declares one
        (it then receives each image's x0 prediction), whether it takes prompts (then `prompts[cond]` is sent),
        and the largest request it takes. Each request may take `timeout` seconds; a connection error or a busy
        answer is retried `retries` times, after backoff·2^k seconds; `cache_dir` keeps each image's score on
        disk (see ScoreCache)."""
        self.url, self.prompts = check_url(url, "the remote reward (a verifier service's)"), list(prompts)
        # the service answers 500 for a reward that failed and 413 for a request too large, the same on every try:
        # only "busy" (503) and connection errors are worth another
        self.poster = Poster("remote reward", timeout, retries, backoff, retry_status={503}, retry_timeouts=False)
        health = self.health()
        self.served, self.version = health["reward"], health["version"]
        self.name = f"remote:{self.served}"
        self.x0_sigma: float | None = health["x0_sigma"]
        self.takes_prompts: bool = health["takes_prompts"]
        self.max_images: int | None = health.get("max_request_images")
        if health.get("scoring_only") is True:
            raise self.error(f"it serves '{self.served}', a held-out evaluator (scoring-only): searching against it "
                             "would leave nothing held out; serve a search reward")
        if health["set_level"]:
            raise self.error(f"it serves the set-level reward '{self.served}', which the remote reward cannot carry "
                             "(the set of chosen images would live in the service): run it in-process")
        if self.takes_prompts and not self.prompts:
            raise self.error(f"it serves '{self.served}', which scores prompts: search prompts on a prompt backend "
                             "(or give prompts=[...])")
        self.cache = None if cache_dir is None else ScoreCache(Path(cache_dir), self.served, self.version)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor, *x0: torch.Tensor) -> torch.Tensor:
        """One score per image (float32, on the images' device), in the order of `images`; x0 (the images' x0
        predictions) where the served reward declares x0_sigma."""
        conditions = self.conditions(cond)
        early = x0[0] if x0 else None
        keys = None if self.cache is None else [self.cache.key(images[i], conditions[i], None if early is None
                                                                 else early[i]) for i in range(len(images))]
        scores = [None] * len(images) if keys is None else [self.cache.get(k) for k in keys]
        missing = [i for i, s in enumerate(scores) if s is None]
        step = self.max_images or len(missing) or 1
        for start in range(0, len(missing), step):
            rows = missing[start:start + step]
            ids = [uuid.uuid4().hex for _ in rows]
            request = ScoreRequest(ids, images[rows], [conditions[i] for i in rows],
                                   None if early is None else early[rows])
            for i, score in zip(rows, self.post(request), strict=True):
                scores[i] = score
                if keys is not None:
                    self.cache.put(keys[i], score)
        return torch.tensor(scores, dtype=torch.float32, device=images.device)  # where in-process rewards put them

    def conditions(self, cond: torch.Tensor) -> list[Condition]:
        """Each image's condition as the service takes it: its label, or its prompt where the served reward takes
        prompts (cond then indexes `prompts`)."""
        values = [int(c) for c in cond.reshape(-1).tolist()]
        if not self.takes_prompts:
            return values
        outside = [c for c in values if not 0 <= c < len(self.prompts)]
        if outside:
            raise self.error(f"condition {outside[0]} indexes none of the {len(self.prompts)} prompts given")
        return [self.prompts[c] for c in values]

    def post(self, request: ScoreRequest) -> list[float]:
        """The scores of one request in the order of its ids: connection errors and busy answers are retried after
        backoff; anything else that fails is a one-line error."""
        try:
            body = encode_request(request)
        except ProtocolError as err:
            raise self.error(f"cannot send these images ({err})") from None
        response = self.poster.send("POST", self.url + SCORE_PATH, content=body, headers={"content-type": CONTENT_TYPE})
        return self.scores(response, request.ids)

    def scores(self, response: Any, ids: list[str]) -> list[float]:
        """The scores of a reply in the order of `ids`, checked (see verifier_protocol.decode_reply), from the
        reward and version that the service served when this reward was built."""
        try:
            payload = response.json()
        except ValueError:
            raise self.error(f"the reply is no JSON ({excerpt(response.text)})") from None
        try:
            scores = decode_reply(payload, ids)
        except ProtocolError as err:
            raise self.error(f"bad reply: {err}") from None
        if (payload.get("reward"), payload.get("version")) != (self.served, self.version):
            raise self.error(f"the reply comes from reward {payload.get('reward')!r} version "
                             f"{payload.get('version')!r}, not the {self.served!r} version {self.version!r} it "
                             "served when this reward was built")
        return scores

    def health(self) -> dict[str, Any]:
        """The service's health answer, checked: protocol v1, the reward's name and version (strings) and its
        traits (x0_sigma: a positive number or null; set_level and takes_prompts: booleans; max_request_images: a
        positive integer or null, where given)."""
        try:
            response = self.poster.client.get(self.url + HEALTH_PATH)  # once: a service down now is a mistake
        except self.poster.httpx.TimeoutException:
            raise self.error(f"no health answer within the timeout of {self.poster.timeout:g} s") from None
        except self.poster.httpx.TransportError as err:
            raise self.error(f"no verifier service answers ({first_line(err)}): start one with `noisesearch "
                             "serve-verifier NAME --port PORT`") from None
        if response.status_code != 200:
            raise self.error(f"the health check answered HTTP {response.status_code}: {excerpt(response.text)}")
        try:
            health = response.json()
        except ValueError:
            health = None
        if not isinstance(health, dict) or health.get("protocol") != PROTOCOL:
            shown = health.get("protocol") if isinstance(health, dict) else "no JSON object"
            raise self.error(f"the health answer speaks {shown!r}, not {PROTOCOL!r}: is this a noisesearch verifier "
                             "service?")
        sigma, max_images = health.get("x0_sigma"), health.get("max_request_images")
        checks = {"reward": isinstance(health.get("reward"), str) and health.get("reward") != "",
                  "version": isinstance(health.get("version"), str),
                  "x0_sigma": sigma is None or is_number(sigma) and math.isfinite(sigma) and sigma > 0,
                  "set_level": isinstance(health.get("set_level"), bool),
                  "takes_prompts": isinstance(health.get("takes_prompts"), bool),
                  "max_request_images": max_images is None or type(max_images) is int and max_images > 0}
        wrong = [key for key, holds in checks.items() if not holds or key not in health and key != "max_request_images"]
        if wrong:
            raise self.error(f"the health answer lacks a valid {', '.join(wrong)}")
        return health

    def error(self, what: str) -> NoiseSearchError:
        return NoiseSearchError(f"remote reward at {self.url}: {what}")


class ScoreCache:
    """Scores on disk, one small file per image under `folder`, keyed by the sha256 of the served reward's name and
    version, the image's condition, its bytes (dtype and shape with them) and its x0 prediction's: a hit skips the
    request, and a reward of another name or version never hits. Entries are written atomically (a killed run
    leaves whole entries or none); an unreadable entry is a miss and is written again."""

    def __init__(self, folder: Path, reward: str, version: str) -> None:
        self.folder, self.reward, self.version = folder, reward, version

    def key(self, image: torch.Tensor, condition: Condition, x0: torch.Tensor | None) -> str:
        digest = hashlib.sha256(json.dumps([CACHE_FORMAT, self.reward, self.version, condition]).encode())
        for tensor in (image, *(() if x0 is None else (x0,))):
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> float | None:
        try:
            score = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return float(score) if is_number(score) and math.isfinite(score) else None

    def put(self, key: str, score: float) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(score))


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
