"""Micro-batching for the verifier service: concurrent requests merge into one reward call.

Requests wait in a bounded queue (counted in images). The oldest waiting request opens a batch; it closes when
`max_batch` images wait or `max_delay_s` has passed since that request arrived, and takes the requests from the
front while they fit in `max_batch` images (a request larger than that goes alone). One worker thread runs the
batches one at a time, so the reward is never called concurrently and the event loop keeps answering (health,
busy) meanwhile. A request beyond `max_queue` waiting images is refused at once (`Busy`), never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from noisesearch.verifier_protocol import ScoreRequest

Scorer = Callable[[Sequence[ScoreRequest]], list[torch.Tensor | str]]


class Busy(Exception):
    """The queue cannot take a request now; its message is one line starting "busy:"."""


class RewardFailed(Exception):
    """The reward call of a request failed; its message is the service's one line."""


@dataclass
class Waiting:
    request: ScoreRequest
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """Merges concurrent `submit` calls into batches of at most `max_batch` images for `score` (see the module)."""

    def __init__(self, score: Scorer, max_batch: int, max_delay_s: float, max_queue: int) -> None:
        self.score, self.max_batch, self.max_delay_s, self.max_queue = score, max_batch, max_delay_s, max_queue
        self.waiting: deque[Waiting] = deque()
        self.queued = 0  # images waiting, not yet in a reward call
        self.arrival = asyncio.Event()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="reward")
        self.task: asyncio.Task | None = None

    async def submit(self, request: ScoreRequest) -> torch.Tensor:
        """The request's scores once its batch is scored; Busy where the queue is full, RewardFailed where the
        reward call failed."""
        n = len(request.ids)
        if self.queued + n > self.max_queue:
            raise Busy(f"busy: {self.queued} images wait and the queue holds {self.max_queue}: retry later")
        loop = asyncio.get_running_loop()
        if self.task is None:
            self.task = loop.create_task(self.run())
        future = loop.create_future()
        self.waiting.append(Waiting(request, future, loop.time()))
        self.queued += n
        self.arrival.set()
        result = await future
        if isinstance(result, str):
            raise RewardFailed(result)
        return result

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.arrival.wait()
            while self.waiting and self.queued < self.max_batch:
                left = self.waiting[0].arrived + self.max_delay_s - loop.time()
                if left <= 0:
                    break
                self.arrival.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # not the builtin before Python 3.11
                    await asyncio.wait_for(self.arrival.wait(), left)
            batch = self.take()
            if not self.waiting:
                self.arrival.clear()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.worker, self.score, [w.request for w in batch])
            except Exception as err:  # a failure of the service itself: each request of the batch gets it
                results = [f"the service failed: {type(err).__name__}: {err}"] * len(batch)
            for waiting, result in zip(batch, results, strict=True):
                if not waiting.future.done():  # a client that left has a cancelled future
                    waiting.future.set_result(result)

    def take(self) -> list[Waiting]:
        """The requests of the next batch, from the front of the queue (those whose client left are dropped)."""
        batch: list[Waiting] = []
        size = 0
        while self.waiting:
            head = self.waiting[0]
            n = len(head.request.ids)
            if batch and size + n > self.max_batch:
                break
            self.waiting.popleft()
            self.queued -= n
            if not head.future.done():
                batch.append(head)
                size += n
        return batch

    async def close(self) -> None:
        """Stop batching: requests still waiting fail with Busy; the worker finishes its batch."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for waiting in self.waiting:
            if not waiting.future.done():
                waiting.future.set_exception(Busy("busy: the service is stopping"))
        self.waiting.clear()
        self.queued = 0
        self.worker.shutdown(wait=True)
