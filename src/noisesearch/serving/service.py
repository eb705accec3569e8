"""One registered reward behind the verifier service: built once, it scores merged requests in one call each.

The service turns each image's condition (protocol v1: a label, a prompt or null) into the `cond` tensor the
reward takes. Labels pass as they are. A reward whose constructor takes `prompts` indexes them by `cond`: the
service keeps a table of the prompts its requests brought, built with the empty prompt "" in place 0 and grown
through the reward's `add_prompts(new)` (which embeds only the new ones), so the model loads once however many
prompts arrive. Null is the unconditional condition: label 0 (what an unconditional network takes) or the
empty prompt.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from noisesearch.assets import first_line
from noisesearch.errors import NoiseSearchError
from noisesearch.rewards.registry import (
    is_scoring_only,
    is_set_level,
    make_reward,
    parse_reward_args,
    reward_factory,
)
from noisesearch.verifier_protocol import ProtocolError, ScoreRequest
from noisesearch.version import __version__

EMPTY_PROMPT = ""  # the prompt of a null condition, in place 0 of the prompt table


@dataclass(frozen=True)
class Traits:
    """What a client must know of the served reward: the sigma of the x0 prediction it compares each image with
    (None: it needs no x0), and whether it reads prompts (else labels)."""

    x0_sigma: float | None
    takes_prompts: bool


def reward_version(name: str, args: Mapping[str, Any], reward: object) -> str:
    """The version a reply names (a client's cache key): the reward's own `version` attribute where it has one,
    else noisesearch's version, and a hash of the reward's name and arguments, so that other weights or settings
    never share a version."""
    base = getattr(reward, "version", None) or f"noisesearch-{__version__}"
    spec = json.dumps({"reward": name, "args": dict(args)}, sort_keys=True, default=str)
    return f"{base}+{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def check_servable(name: str, args: Mapping[str, Any], device: str) -> bool:
    """Whether reward `name` takes prompts, after a one-line NoiseSearchError for what the service cannot serve
    (checked before any model loads): an unknown name, arguments it does not take, a device other than the cpu
    for a reward that takes none, a set-level reward (it keeps the set chosen so far across calls, so its score
    would depend on every client's earlier calls), a prompt reward without `add_prompts`, or a `prompts` argument
    (the prompts come with the requests)."""
    parameters = inspect.signature(reward_factory(name)).parameters
    parse_reward_args(name, args)
    if "device" not in parameters and device != "cpu":
        raise NoiseSearchError(f"reward '{name}' takes no device: it runs on the cpu, so drop --device {device}")
    if is_set_level(name):
        raise NoiseSearchError(f"reward '{name}' is set-level (it scores a candidate against the images chosen "
                               "before it, across calls), so it cannot be served to many clients: serve a point-wise "
                               "reward")
    takes_prompts = "prompts" in parameters
    if takes_prompts and not callable(getattr(reward_factory(name), "add_prompts", None)):
        raise NoiseSearchError(f"reward '{name}' reads prompts but has no add_prompts(prompts) method, so the service "
                               "cannot learn its requests' prompts without reloading it: give it one")
    if "prompts" in args:
        raise NoiseSearchError("the service learns the prompts from its requests: drop --reward-arg prompts")
    return takes_prompts


class VerifierService:
    """Reward `name` built once with `args` (strings parsed as for --reward-arg) on `device`; `score` runs a batch
    of requests (in one worker thread, one batch at a time)."""

    def __init__(self, name: str, args: Mapping[str, str] | None = None, device: str = "cpu") -> None:
        args = dict(args or {})
        takes_prompts = check_servable(name, args, device)
        self.name, self.args, self.device = name, args, device
        self.reward = make_reward(name, [EMPTY_PROMPT] if takes_prompts else None, device, **args)
        self.traits = Traits(getattr(self.reward, "x0_sigma", None), takes_prompts)
        self.scoring_only = is_scoring_only(name)
        self.version = reward_version(name, args, self.reward)
        self.prompts: dict[str, int] = {EMPTY_PROMPT: 0} if takes_prompts else {}

    def describe(self) -> dict[str, Any]:
        """The reward's part of the health answer."""
        return {"reward": self.name, "version": self.version, "reward_args": self.args, "device": self.device,
                "x0_sigma": self.traits.x0_sigma, "takes_prompts": self.traits.takes_prompts,
                "set_level": False, "scoring_only": self.scoring_only}  # set-level rewards are never served

    def check(self, request: ScoreRequest) -> None:
        """A ProtocolError for a request this reward cannot score (checked before it waits in the queue): the
        wrong kind of condition, or an x0 missing or not wanted."""
        wanted, other = (str, int) if self.traits.takes_prompts else (int, str)
        if any(isinstance(c, other) for c in request.conditions):
            kind = "prompts (str)" if wanted is str else "labels (int)"
            raise ProtocolError(f"reward '{self.name}' takes {kind} or nulls as conditions, got a "
                                f"{other.__name__}")
        if (request.x0 is None) != (self.traits.x0_sigma is None):
            need = (f"each image's x0 prediction at sigma {self.traits.x0_sigma} (tensor 'x0')"
                    if request.x0 is None else "no tensor 'x0'")
            raise ProtocolError(f"reward '{self.name}' takes {need}")

    def score(self, requests: Sequence[ScoreRequest]) -> list[torch.Tensor | str]:
        """Each request's scores, or the one line saying why its reward call failed. Requests whose images share a
        shape and dtype go through the reward in one call; where that call fails, each of them is scored alone,
        so that one bad request fails only itself."""
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((tuple(request.images.shape[1:]), request.images.dtype), []).append(i)
        out: list[torch.Tensor | str] = [""] * len(requests)
        for members in groups.values():
            for i, scores in zip(members, self.score_group([requests[i] for i in members]), strict=True):
                out[i] = scores
        return out

    def score_group(self, requests: list[ScoreRequest]) -> list[torch.Tensor | str]:
        try:
            return list(self.call(requests))
        except Exception as err:  # a reward may raise anything; the client gets one line
            if len(requests) > 1:
                return [self.score_group([r])[0] for r in requests]
            line = str(err) if isinstance(err, NoiseSearchError) else f"{type(err).__name__}: {first_line(err)}"
            return [f"reward '{self.name}' failed: {line}"]

    @torch.no_grad()
    def call(self, requests: list[ScoreRequest]) -> tuple[torch.Tensor, ...]:
        """One reward call on the requests' images, its (B,) float scores split back per request."""
        images = torch.cat([r.images for r in requests])
        cond = self.cond([c for r in requests for c in r.conditions])
        x0 = [torch.cat([r.x0 for r in requests])] if self.traits.x0_sigma is not None else []
        scores = torch.as_tensor(self.reward(images, cond, *x0)).detach()
        if scores.shape != (len(images),):
            raise NoiseSearchError(f"reward '{self.name}' returned scores of shape {tuple(scores.shape)} for "
                                   f"{len(images)} images")
        if not bool(torch.isfinite(scores).all()):
            raise NoiseSearchError(f"reward '{self.name}' returned a score that is not finite (NaN or inf)")
        return scores.cpu().split([len(r.images) for r in requests])

    def cond(self, conditions: list[int | str | None]) -> torch.Tensor:
        """The cond tensor of the conditions: labels, or indices into the prompt table (grown by the new ones)."""
        if not self.traits.takes_prompts:
            return torch.tensor([0 if c is None else c for c in conditions], dtype=torch.long)
        prompts = [EMPTY_PROMPT if c is None else c for c in conditions]
        new = list(dict.fromkeys(p for p in prompts if p not in self.prompts))
        if new:
            self.reward.add_prompts(new)
            self.prompts.update({p: i for i, p in enumerate(new, start=len(self.prompts))})
        return torch.tensor([self.prompts[p] for p in prompts], dtype=torch.long)
