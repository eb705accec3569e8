"""A client of the Flow-GRPO / ddpo reward-server protocol, for verifiers users already serve that way.

The protocol, as read in yifan123/flow_grpo `flow_grpo/rewards.py` (commit ac4c86e8, the clients
`deqa_score_remote`, `geneval_score`, `unifiedreward_score_remote`), its server yifan123/reward-server
`app_deqa.py` and `app_geneval.py` (commit 92ac29fb), and kvablack/ddpo-pytorch `ddpo_pytorch/rewards.py`
(commit 1958463f) with kvablack/LLaVA-server `app.py` (commit d83c1e86), which Flow-GRPO's follows:

- the client POSTs to the server's root URL (Flask route "/") a body `pickle.dumps(dict)`: "images" is a list of
  JPEG files as bytes (uint8 RGB arrays saved by Pillow, `format="JPEG"`: quality 75, Pillow's default, in
  Flow-GRPO; 80 in ddpo), in batches of at most 64 images per request (Flow-GRPO; 4 or 16 in ddpo); further keys
  by server: "prompts" (UnifiedReward), "meta_datas" (one dict per image) and "only_strict" (GenEval),
  "queries"/"answers" (ddpo's LLaVA server);
- the server opens each image with `Image.open(BytesIO(b), formats=["jpeg"])` and answers 200 with a pickled
  dict: one score per image under "outputs" (DeQA, UnifiedReward) or "scores" (GenEval, besides "rewards",
  "strict_rewards" and group dicts); ddpo's LLaVA server answers "outputs" (text) and (batch, queries) lists
  "precision", "recall", "f1". On an exception it answers 500 with the traceback as UTF-8 text;
- Flow-GRPO's client retries status 500 up to 1000 times (urllib3 Retry, backoff factor 1) with a 120 s timeout.

Security: unpickling runs whatever code a pickle names, so a reply from a compromised or impostor server could
run code here. Replies are therefore read with ReplyUnpickler, which resolves no global but numpy's array and
scalar constructors: plain containers, numbers and strings, and numpy arrays of them, load; anything else is a
one-line error. Requests are pickled by us and hold only bytes, strings and what `extra`/`metadata` give.
"""

from __future__ import annotations

import io
import json
import numbers
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from noisesearch.errors import NoiseSearchError
from noisesearch.imaging import to_uint8
from noisesearch.rewards.http import Poster, check_url, excerpt
from noisesearch.rewards.registry import register_reward

NAME = "flow_grpo_server"
NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
# what pickles of numpy arrays and scalars name (numpy 1.x pickles say numpy.core, 2.x numpy._core)
ALLOWED_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer")}
BODY_KEYS = ("images", "prompts", "meta_datas")


class ReplyUnpickler(pickle.Unpickler):
    """Unpickles a reply that holds containers, numbers, strings and numpy arrays only: every other global
    (a function or class a malicious pickle would call) is refused, so loading cannot run arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        current = module.replace("numpy.core.", "numpy._core.")
        if (current, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which no score reply needs (refused: "
                                         "unpickling it could run code)")
        return super().find_class(current.replace("numpy._core", NUMPY_CORE), name)


def load_reply(content: bytes) -> Any:
    return ReplyUnpickler(io.BytesIO(content)).load()


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """One (H, W) or (H, W, 3) uint8 image as an RGB JPEG file, as the Flow-GRPO client encodes it."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def read_metadata(metadata: Sequence[Any] | Path | str | None) -> list[Any] | None:
    """Per-condition metadata: a list, or a JSON-lines file of one object per condition (GenEval's format)."""
    if metadata is None or isinstance(metadata, list):
        return metadata
    path = Path(metadata)
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise NoiseSearchError(f"{NAME}: metadata={path} is no readable JSON-lines file ({excerpt(str(err))})"
                               ) from None


@register_reward(NAME)
class FlowGrpoServer:
    """The scores of a Flow-GRPO / ddpo reward server at `url` (DeQA, GenEval, UnifiedReward): see remote-verifiers.md.

    Images go as pickled JPEG files, one score per image comes back under the pickled reply's `score_key`.
    `prompts` are sent as "prompts" (indexed by the condition), `metadata` (a list, or a JSON-lines file, of one
    object per condition) as "meta_datas", and `extra` (a JSON object of constant keys, e.g. GenEval's
    {"only_strict": false}) as it is. Images go `batch_size` to a request, as JPEG at `quality`. The reply is read
    without running code (ReplyUnpickler); a reply with another count of scores, or a NaN, is a one-line error.
    Building the reward sends one GET to `url`, so that a server that is down fails before any search.
    """

    name = NAME

    def __init__(self, url: str = "", prompts: Sequence[str] = (), score_key: str = "outputs",
                 metadata: list[Any] | Path | None = None, extra: dict[str, Any] | None = None,
                 batch_size: int = 64, quality: int = 75, timeout: float = 120.0, retries: int = 3,
                 backoff: float = 1.0) -> None:
        self.url = check_url(url, NAME)
        for key, value, low, high in (("batch_size", batch_size, 1, None), ("quality", quality, 0, 100)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
                    high is not None and value > high):
                raise NoiseSearchError(f"{NAME}: {key} must be an integer from {low}{f' to {high}' if high else ''}, "
                                       f"got {value!r}")
        clash = sorted(set(extra or {}) & set(BODY_KEYS))
        if clash:
            raise NoiseSearchError(f"{NAME}: extra may not set {', '.join(clash)} (the client sends those)")
        if not isinstance(score_key, str) or not score_key:
            raise NoiseSearchError(f"{NAME}: score_key must name the reply's key of scores (outputs, scores, ...)")
        self.prompts, self.metadata = list(prompts), read_metadata(metadata)
        self.score_key, self.extra = score_key, dict(extra or {})
        self.batch_size, self.quality = int(batch_size), int(quality)
        self.poster = Poster(NAME, timeout, retries, backoff)
        self.poster.send("GET", self.url, accept=range(400, 500))  # up? (Flask answers 405 to a GET on "/")

    def __call__(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        indices = self.condition_indices(cond, len(images))
        pixels = to_uint8(images)
        scores: list[float] = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(pixels)))
            body: dict[str, Any] = {"images": [jpeg_bytes(pixels[i], self.quality) for i in chunk]}
            if self.prompts:
                body["prompts"] = [self.prompts[indices[i]] for i in chunk]
            if self.metadata is not None:
                body["meta_datas"] = [self.metadata[indices[i]] for i in chunk]
            body.update(self.extra)
            response = self.poster.send("POST", self.url, content=pickle.dumps(body),
                                        headers={"Content-Type": "application/octet-stream"})
            scores += self.read_scores(response.content, len(chunk))
        return torch.tensor(scores, dtype=torch.float32)

    def condition_indices(self, cond: torch.Tensor | None, n: int) -> list[int]:
        """Each image's index into the prompts and metadata; checked before any request."""
        needs = [(what, len(rows)) for what, rows in (("prompts", self.prompts), ("metadata", self.metadata)) if rows]
        if not needs:
            return []
        if cond is None or len(cond) != n:
            raise NoiseSearchError(f"{NAME} sends prompts or metadata and needs one condition per image")
        indices = cond.long().tolist()
        for what, count in needs:
            bad = [i for i in indices if not 0 <= i < count]
            if bad:
                raise NoiseSearchError(f"{NAME}: condition {bad[0]} has no entry in the {count} {what} given")
        return indices

    def read_scores(self, content: bytes, n: int) -> list[float]:
        """The `score_key` scores of a reply, checked: n finite numbers, as a list (N,) or (N, 1)."""
        try:
            reply = load_reply(content)
        except Exception as err:  # a damaged pickle raises many types; ours is UnpicklingError
            raise NoiseSearchError(f"{NAME}: the reply of {self.url} is no safe pickle of scores "
                                   f"({excerpt(str(err)) if str(err) else type(err).__name__})") from None
        if not isinstance(reply, dict) or self.score_key not in reply:
            keys = sorted(map(str, reply)) if isinstance(reply, dict) else type(reply).__name__
            raise NoiseSearchError(f"{NAME}: the reply of {self.url} has no {self.score_key!r} (it holds {keys}): "
                                   "set score_key to the key of its scores")
        try:
            values = np.asarray(reply[self.score_key], dtype=np.float64)
        except (TypeError, ValueError):
            raise NoiseSearchError(f"{NAME}: the reply of {self.url} holds {self.score_key!r} that are not numbers"
                                   ) from None
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (n,):
            raise NoiseSearchError(f"{NAME}: {self.url} answered {self.score_key!r} of shape {values.shape} for {n} "
                                   "images (one score per image expected)")
        if not np.isfinite(values).all():
            raise NoiseSearchError(f"{NAME}: {self.url} answered a score that is NaN or infinite")
        return values.tolist()
