"""The verifier service's two answers (protocol v1), shared by both placements (uvicorn here, Ray Serve replicas).

`POST /v1/score`: 200 with the reply, or `{"error": line}` with 400 (malformed body, a condition or x0 the
reward cannot take), 413 (more images than `max_request_images`, or a body over `max_body_mb`), 503 (busy: the
queue holds `max_queue` images; retry later) or 500 (the reward call failed). `GET /v1/health`: the reward, its
version and traits, the device, the batching knobs and the queue.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from noisesearch.serving.config import Limits
from noisesearch.serving.microbatch import Busy, MicroBatcher, RewardFailed
from noisesearch.serving.service import VerifierService
from noisesearch.verifier_protocol import PROTOCOL, ProtocolError, ScoreReply, decode_request, encode_reply

MB = 1 << 20


class TooLarge(Exception):
    """A request over the service's limits (413)."""


def error(status: int, line: str) -> JSONResponse:
    return JSONResponse({"error": line}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body; TooLarge as soon as it is known to exceed `limit` bytes (from its Content-Length, else
    while it streams in), so that an oversized body is never held whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body of {int(declared)} bytes is over the service's limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the service's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Endpoint:
    """The score and health answers of one service process (or Ray replica), its batcher in front of the reward;
    `placement` (e.g. {"placement": "ray", "replicas": 2}) is reported in the health answer."""

    def __init__(self, service: VerifierService, limits: Limits, placement: dict[str, Any] | None = None) -> None:
        self.service, self.limits = service, limits
        self.placement = placement or {"placement": "local"}
        self.batcher = MicroBatcher(service.score, limits.max_batch, limits.max_delay_ms / 1000, limits.max_queue)

    async def score(self, request: Request) -> JSONResponse:
        try:
            score_request = decode_request(await read_body(request, int(self.limits.max_body_mb * MB)))
            if len(score_request.ids) > self.limits.max_request_images:
                raise TooLarge(f"the request holds {len(score_request.ids)} images, over the service's limit of "
                               f"{self.limits.max_request_images} per request: split it")
            self.service.check(score_request)
            scores = await self.batcher.submit(score_request)
        except ProtocolError as err:
            return error(400, str(err))
        except TooLarge as err:
            return error(413, str(err))
        except Busy as err:
            return error(503, str(err))
        except RewardFailed as err:
            return error(500, str(err))
        reply = ScoreReply(score_request.ids, scores.tolist(), self.service.name, self.service.version)
        return JSONResponse(encode_reply(reply))

    async def health(self) -> JSONResponse:
        return JSONResponse({"protocol": PROTOCOL, "status": "ok", **self.service.describe(), **asdict(self.limits),
                             "queued": self.batcher.queued, **self.placement})

    async def close(self) -> None:
        await self.batcher.close()
