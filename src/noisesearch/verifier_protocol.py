"""The verifier service's wire format, version 1 ("noisesearch-verifier/1"); see docs/verifier-service.md.

A request is `POST /v1/score` with a safetensors body (compact binary, no pickle): tensor `images` (N, C, H, W)
in [-1, 1] in the dtype the caller holds (float32 keeps results bit-identical to an in-process reward), optionally
tensor `x0` of the same shape (each image's trajectory's x0 prediction, for the self-supervised verifiers), and
string metadata: `protocol`, `ids` (a JSON list of N distinct strings naming the images) and `conditions` (a JSON
list of N labels (int), prompts (str) or nulls). The answer is JSON: `protocol`, `reward`, `version`, `ids` (as
sent, in any order the server likes) and `scores` (one finite float per id); an error is JSON `{"error": line}`
with status 400 (malformed), 413 (too large), 503 (busy: retry later) or 500 (the reward failed).

This module imports only the standard library, torch and safetensors, so that an isolated verifier environment's
serving shim can carry a copy of it unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

PROTOCOL = "noisesearch-verifier/1"
SCORE_PATH = "/v1/score"
HEALTH_PATH = "/v1/health"
CONTENT_TYPE = "application/octet-stream"
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

Condition = int | str | None


class ProtocolError(ValueError):
    """A body that does not follow the protocol; its message is one line naming what is wrong."""


@dataclass(frozen=True)
class ScoreRequest:
    """N images to score, with their ids and conditions (and their x0 predictions where the reward needs them)."""

    ids: list[str]
    images: torch.Tensor
    conditions: list[Condition]
    x0: torch.Tensor | None = None


@dataclass(frozen=True)
class ScoreReply:
    """One score per id, from the reward `reward` at `version`."""

    ids: list[str]
    scores: list[float]
    reward: str
    version: str


def encode_request(request: ScoreRequest) -> bytes:
    check_request(request)
    tensors = {"images": request.images.detach().cpu().contiguous()}
    if request.x0 is not None:
        tensors["x0"] = request.x0.detach().cpu().contiguous()
    metadata = {"protocol": PROTOCOL, "ids": json.dumps(request.ids), "conditions": json.dumps(request.conditions)}
    return save_tensors(tensors, metadata=metadata)


def decode_request(body: bytes) -> ScoreRequest:
    """The request in a body, checked; a ProtocolError (one line) for anything else."""
    try:
        tensors = load_tensors(body)
        metadata = read_metadata(body)
    except Exception as err:  # safetensors raises several types for a damaged body
        raise ProtocolError(f"the body is no safetensors file ({first_line(err)})") from None
    if metadata.get("protocol") != PROTOCOL:
        raise ProtocolError(f"protocol {metadata.get('protocol')!r} is not {PROTOCOL!r}")
    extra = sorted(set(tensors) - {"images", "x0"})
    if "images" not in tensors or extra:
        raise ProtocolError(f"the body must hold tensor 'images' (and optionally 'x0'), got {sorted(tensors)}")
    try:
        ids, conditions = json.loads(metadata.get("ids", "")), json.loads(metadata.get("conditions", ""))
    except json.JSONDecodeError:
        raise ProtocolError("metadata 'ids' and 'conditions' must be JSON lists") from None
    request = ScoreRequest(ids, tensors["images"], conditions, tensors.get("x0"))
    check_request(request)
    return request


def check_request(request: ScoreRequest) -> None:
    images, n = request.images, len(request.images) if request.images.dim() else 0
    if images.dim() != 4 or images.dtype not in FLOAT_DTYPES or n == 0:
        raise ProtocolError(f"images must be a non-empty float tensor (N, C, H, W), got {images.dtype} of shape "
                            f"{tuple(images.shape)}")
    if not isinstance(request.ids, list) or len(request.ids) != n or len(set(request.ids)) != n or not all(
            isinstance(i, str) for i in request.ids):
        raise ProtocolError(f"ids must be {n} distinct strings, one per image")
    if not isinstance(request.conditions, list) or len(request.conditions) != n or not all(
            c is None or isinstance(c, (int, str)) and not isinstance(c, bool) for c in request.conditions):
        raise ProtocolError(f"conditions must be {n} labels (int), prompts (str) or nulls, one per image")
    if request.x0 is not None and (request.x0.shape != images.shape or request.x0.dtype not in FLOAT_DTYPES):
        raise ProtocolError(f"x0 must be a float tensor shaped like images {tuple(images.shape)}, got "
                            f"{tuple(request.x0.shape)}")


def encode_reply(reply: ScoreReply) -> dict[str, Any]:
    return {"protocol": PROTOCOL, "reward": reply.reward, "version": reply.version, "ids": reply.ids,
            "scores": reply.scores}


def decode_reply(payload: object, sent_ids: list[str]) -> list[float]:
    """The scores of a JSON reply in the order of `sent_ids` (matched by id, never by position); a ProtocolError
    for a reply that is not one finite score for each id sent, and for nothing else."""
    if not isinstance(payload, dict) or payload.get("protocol") != PROTOCOL:
        raise ProtocolError(f"the reply is not a {PROTOCOL} answer")
    ids, scores = payload.get("ids"), payload.get("scores")
    if not isinstance(ids, list) or not isinstance(scores, list) or len(ids) != len(scores):
        raise ProtocolError("the reply's ids and scores are not two lists of one length")
    if len(ids) != len(sent_ids) or set(ids) != set(sent_ids) or len(set(ids)) != len(ids):
        raise ProtocolError(f"the reply scores {len(ids)} images with ids other than the {len(sent_ids)} sent")
    by_id = dict(zip(ids, scores, strict=True))
    ordered = [by_id[i] for i in sent_ids]
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in ordered):
        raise ProtocolError("the reply holds a score that is not a finite number (NaN, inf or not a number)")
    return [float(s) for s in ordered]


def read_metadata(body: bytes) -> dict[str, str]:
    """The string metadata of a safetensors body (its JSON header's `__metadata__`)."""
    length = int.from_bytes(body[:8], "little")
    header = json.loads(body[8:8 + length])
    return header.get("__metadata__") or {}


def first_line(err: BaseException) -> str:
    """An error's first line (its type where it has no text): noisesearch.assets.first_line, repeated here because
    this module imports nothing of the package (the isolated environments' shim carries it alone)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
