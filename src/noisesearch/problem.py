"""The metered Problem: the only door through which a search algorithm reaches model and reward.

It holds the conditions being sampled (one per returned image), the seed of each, the sampler it
is given, the denoiser and the reward. Algorithms hand it tensors shaped (C, M, channels, H, W): M candidate
states for each of the C conditions (or for the subset listed in `which`). Every denoiser call
is counted per condition (one network evaluation of one image = 1 NFE, 2 with classifier-free
guidance) and checked against the optional hard budget before it runs.

Calls carry at most `max_batch` rows. By default they carry real rows only (the rows of one request split
into equal chunks), so a one-image search pays for no padding; the same command on the same machine is
bit-identical. With `batch_invariant=True` every call (network, decoder, reward) has exactly `max_batch`
rows, the last chunk padded (padding is not NFE): a condition's result is then bit-identical whatever else
shares the batch (on CPU a row's output can change in the last bits with the call's batch size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch

from noisesearch.batching import parse_max_batch
from noisesearch.checks import check_flag, shown
from noisesearch.denoiser import Denoiser
from noisesearch.errors import BudgetExceeded, NoiseSearchError
from noisesearch.progress import ProgressCallback, ProgressEvent
from noisesearch.rewards.registry import is_set_level
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.seeds import check_seeds
from noisesearch.types import Proposal, StepOut

DENOISER_ATTRIBUTES = ("image_shape", "nfe_per_call", "label_dim", "latent", "decode", "default_sampler")


class Reward(Protocol):
    """r(images, cond) -> (B,) scores, higher is better; images (B, C, H, W) in [-1, 1]."""

    name: str

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


class SetLevelReward(Reward, Protocol):
    """A set-level verifier (e.g. Ma et al.'s FID oracle; docs/rewards.md): it scores each candidate against the set
    of images chosen so far. A search runs its conditions in order, one at a time (SearchAlgorithm.run):
    `reset()` empties the set at the start of a run, `commit(images, cond)` adds each condition's chosen final
    image before the next condition is searched, so a condition's result depends only on the conditions before it."""

    set_level: bool  # True

    def reset(self) -> None: ...

    def commit(self, images: torch.Tensor, cond: torch.Tensor) -> None: ...


def padded_batches(fn: Callable[..., torch.Tensor], args: Sequence[torch.Tensor], batch: int) -> torch.Tensor:
    """Apply a row-wise `fn` to `args` in calls of exactly `batch` rows (the last chunk padded by
    repeating its last row) and return the unpadded outputs concatenated.

    A fixed call shape makes every row's result independent of how many rows share the work: on
    CPU, a network's output for one row changes in the last bits with the batch size (measured
    here: batch 8 vs 16 with one thread), but never with the other rows of a same-shaped call.
    """
    n = args[0].shape[0]
    outs = []
    for start in range(0, n, batch):
        chunk = [a[start:start + batch] for a in args]
        rows = chunk[0].shape[0]
        if rows < batch:
            chunk = [torch.cat([a, a[-1:].expand(batch - rows, *a.shape[1:])]) for a in chunk]
        outs.append(fn(*chunk)[:rows])
    return torch.cat(outs)


def row_batches(fn: Callable[..., torch.Tensor], args: Sequence[torch.Tensor], batch: int) -> torch.Tensor:
    """Apply a row-wise `fn` to `args` in as few calls of at most `batch` rows as possible, of equal size
    (the last may be smaller), with no padding, and return the outputs concatenated."""
    n = args[0].shape[0]
    if n <= batch:
        return fn(*args)
    size = -(-n // -(-n // batch))
    return torch.cat([fn(*[a[start:start + size] for a in args]) for start in range(0, n, size)])


def check_settings(max_batch: object, nfe_budget: int | None) -> int:
    """The rows per call a Problem uses (noisesearch.batching.parse_max_batch), or a NoiseSearchError for a
    batch size or NFE budget a Problem cannot use."""
    max_batch = parse_max_batch(max_batch, fixed_for="a Problem (make_problem resolves 'auto')")
    if nfe_budget is not None and (not isinstance(nfe_budget, int) or isinstance(nfe_budget, bool) or nfe_budget < 1):
        raise NoiseSearchError(f"the NFE budget (nfe_budget) must be an integer of at least 1, or None for no "
                               f"budget, got {shown(nfe_budget)}")
    return max_batch


def check_denoiser(denoiser: object) -> None:
    """A one-line error unless `denoiser` has every attribute of the Denoiser protocol."""
    missing = [name for name in DENOISER_ATTRIBUTES if not hasattr(denoiser, name)]
    if missing or not callable(denoiser):
        raise NoiseSearchError(f"the denoiser lacks {', '.join(missing) or '__call__'}: subclass "
                               "noisesearch.DenoiserBase (it supplies the defaults) or see the Denoiser protocol")
    per_call = denoiser.nfe_per_call
    if not isinstance(per_call, int) or isinstance(per_call, bool) or per_call < 1:
        raise NoiseSearchError(f"the denoiser's nfe_per_call must be an integer of at least 1, got {per_call!r}")
    shape = denoiser.image_shape
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape)):
        raise NoiseSearchError(f"the denoiser's image_shape must be three positive integers, got {shape!r}")


def describe_output(out: object) -> str:
    """What a model or reward returned, for error messages."""
    if isinstance(out, torch.Tensor):
        return f"a {str(out.dtype).removeprefix('torch.')} tensor of shape {tuple(out.shape)}"
    return f"a {type(out).__name__}"


class Problem:
    """Denoiser + sampler + reward + NFE meter + budget for C conditions with one seed each."""

    def __init__(
        self,
        denoiser: Denoiser,
        reward: Reward,
        cond: torch.Tensor,
        seeds: Sequence[int],
        sampler: Sampler | None = None,
        *,
        max_batch: int = 16,
        nfe_budget: int | None = None,
        callback: ProgressCallback | None = None,
        batch_invariant: bool = False,
        trace_detail: bool = False,
        keep_candidates: bool = False,
    ) -> None:
        """`sampler` defaults to the denoiser's default sampler; `callback` receives ProgressEvents;
        `batch_invariant` pads every call to exactly `max_batch` rows (see the module docstring); `trace_detail`
        asks the per-step searches to keep every candidate's score and each step's x0 prediction in their
        trace (memory: one image per condition and searched step; no NFE). `keep_candidates` keeps, per condition,
        the images and scores of the last scoring round that compared two or more of its candidates (`candidates`:
        final images for searches over whole trajectories, one-step x0 predictions for per-step searches)."""
        if len(seeds) != cond.shape[0]:
            raise NoiseSearchError(f"got {cond.shape[0]} conditions but {len(seeds)} seeds: give one seed each")
        max_batch = check_settings(max_batch, nfe_budget)
        check_denoiser(denoiser)
        self.denoiser = denoiser
        self.reward = reward
        self.cond = cond
        self.seeds = check_seeds(seeds)
        self.sampler = sampler if sampler is not None else denoiser.default_sampler()
        self.max_batch = max_batch
        self.nfe_budget = nfe_budget
        self.nfe = torch.zeros(cond.shape[0], dtype=torch.long)
        self.batch_invariant = check_flag(batch_invariant, "batch_invariant")
        self.padded_rows = 0
        self.callback = callback
        self.trace_detail = check_flag(trace_detail, "trace_detail")
        self.keep_candidates = check_flag(keep_candidates, "keep_candidates")
        self.candidates: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # condition -> (images, scores)

    def _batched(self, fn: Callable[..., torch.Tensor], args: Sequence[torch.Tensor]) -> torch.Tensor:
        """`fn` over the rows of `args` in calls of the Problem's mode (padded to max_batch or real rows only)."""
        if self.batch_invariant:
            self.padded_rows += -args[0].shape[0] % self.max_batch
            return padded_batches(fn, args, self.max_batch)
        return row_batches(fn, args, self.max_batch)

    @property
    def n(self) -> int:
        """Number of conditions (= images returned)."""
        return self.cond.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.denoiser.image_shape)

    def generators(self) -> SampleGenerators:
        """Fresh per-condition generators seeded by each condition's seed."""
        return SampleGenerators(self.seeds)

    @contextmanager
    def part(self, which: Sequence[int] | torch.Tensor) -> Iterator[Problem]:
        """A Problem over the conditions `which` of this one (same model, reward, sampler, settings, budget and
        progress callback), its meter starting at theirs; what it spends is charged back here when the block
        ends, so NFE stays counted by the Problems alone. For algorithms that search conditions in parts."""
        with self._child(self._which(which), self.sampler) as sub:
            yield sub

    @contextmanager
    def with_sampler(self, sampler: Sampler) -> Iterator[Problem]:
        """This Problem with another sampler (e.g. a preview of fewer steps), metered and charged back as `part`
        does."""
        with self._child(torch.arange(self.n), sampler) as sub:
            yield sub

    @contextmanager
    def _child(self, idx: torch.Tensor, sampler: Sampler) -> Iterator[Problem]:
        sub = Problem(self.denoiser, self.reward, self.cond[idx], [self.seeds[i] for i in idx.tolist()],
                      sampler, max_batch=self.max_batch, nfe_budget=self.nfe_budget, callback=self.callback,
                      batch_invariant=self.batch_invariant, trace_detail=self.trace_detail,
                      keep_candidates=self.keep_candidates)
        sub.nfe = self.nfe[idx].clone()
        try:
            yield sub
        finally:
            self.nfe[idx] = sub.nfe
            self.padded_rows += sub.padded_rows
            self.candidates |= {int(idx[k]): kept for k, kept in sub.candidates.items()}

    @property
    def set_level(self) -> bool:
        """Whether the reward is set-level (SetLevelReward): conditions are then searched in order, one at a time."""
        return is_set_level(self.reward)

    def reset_set(self) -> None:
        """Empty a set-level reward's set of chosen images (a run starts a new set)."""
        self.reward.reset()

    def commit(self, images: torch.Tensor, which: Sequence[int] | torch.Tensor) -> None:
        """Add the chosen final images (C', channels, H, W) of conditions `which` to a set-level reward's set."""
        self.reward.commit(images, self.cond[self._which(which)])

    def _which(self, which: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
        return torch.arange(self.n) if which is None else torch.as_tensor(which, dtype=torch.long)

    def start_progress(self, total_nfe_per_image: int | None, desc: str) -> None:
        """Tell the callback that a search of about `total_nfe_per_image` NFE per image starts."""
        if self.callback is not None:
            total = None if total_nfe_per_image is None else total_nfe_per_image * self.n
            self.callback(ProgressEvent("start", total, desc))

    def close_progress(self) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent("end"))

    def _charge(self, idx: torch.Tensor, per_condition: int) -> None:
        cost = per_condition * self.denoiser.nfe_per_call
        spend = torch.bincount(idx, minlength=self.n) * cost  # a condition listed twice pays twice
        if self.nfe_budget is not None:
            over = self.nfe + spend > self.nfe_budget
            if bool(over.any()):
                c = int(over.nonzero()[0])
                raise BudgetExceeded(
                    f"condition {c} would use {int(self.nfe[c] + spend[c])} NFE, over the hard budget of "
                    f"{self.nfe_budget} per image: raise the budget or lower the search parameters")
        self.nfe += spend
        if self.callback is not None:
            self.callback(ProgressEvent("nfe", cost * len(idx)))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float, which=None, step: int | None = None
                ) -> torch.Tensor:
        """Metered D(x, sigma, cond) on x of shape (C', M, *image); sigma scalar or shaped (C', M). A NaN or
        inf in the output is a NoiseSearchError naming the sampler `step` and sigma."""
        idx = self._which(which)
        c, m = x.shape[:2]
        if c != len(idx) or tuple(x.shape[2:]) != self.image_shape:
            raise NoiseSearchError(f"denoise takes x shaped ({len(idx)}, M, {', '.join(map(str, self.image_shape))}), "
                                   f"got {tuple(x.shape)}")
        self._charge(idx, m)
        sig = torch.as_tensor(sigma, dtype=x.dtype).expand(c, m).reshape(-1)
        cond = self.cond[idx].repeat_interleave(m, dim=0)
        rows = c * m
        out = self._batched(self.denoiser, [x.reshape(rows, *x.shape[2:]), sig, cond])
        if out.shape != (rows, *x.shape[2:]):
            raise NoiseSearchError(f"the denoiser returned {describe_output(out)} for {rows} rows of shape "
                                   f"{tuple(x.shape[2:])}: it must return one x0 prediction per row")
        if not bool(torch.isfinite(out).all()):
            where = "" if step is None else f" at sampler step {step}"
            raise NoiseSearchError(f"the denoiser returned NaN or inf{where} (sigma {float(sig.max()):.4g}): check "
                                   "the model and its settings (guidance, dtype) and the search's (lambda_)")
        return out.reshape(x.shape)

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from x0 predictions or final states shaped (C', M, *state), no NFE: the
        denoiser's `decode` (latent models: e.g. a VAE, in calls of at most max_batch rows)."""
        if not self.denoiser.latent:
            return self.denoiser.decode(x)
        c, m = x.shape[:2]
        images = self._batched(self.denoiser.decode, [x.reshape(c * m, *x.shape[2:])])
        return images.reshape(c, m, *images.shape[1:]).clamp(-1, 1)

    def score(self, x: torch.Tensor, which=None, x0: torch.Tensor | None = None) -> torch.Tensor:
        """Reward of the images of x0 predictions or final states shaped (C', M, *state): (C', M), no NFE. For a
        reward that declares x0_sigma, `x0` holds each final state's x0 prediction at step `x0_step`."""
        return self.score_images(self.to_images(x), which, None if x0 is None else self.to_images(x0))

    @property
    def x0_step(self) -> int | None:
        """The sampler step whose x0 prediction the reward needs beside each final image: for a reward that declares
        `x0_sigma` (the self-supervised verifiers), the step whose sigma_hat is nearest to it; None for others."""
        sigma = getattr(self.reward, "x0_sigma", None)
        return None if sigma is None else int((self.sampler.sigma_hats - sigma).abs().argmin())

    def score_images(self, images: torch.Tensor, which=None, x0_images: torch.Tensor | None = None) -> torch.Tensor:
        """Reward of images in [-1, 1] shaped (C', M, channels, H, W): (C', M) scores, no NFE; `x0_images` (the
        same shape) are their trajectories' x0 predictions at `x0_step`, for a reward that needs them."""
        idx = self._which(which)
        c, m = images.shape[:2]
        cond = self.cond[idx].repeat_interleave(m, dim=0)
        flat = images.reshape(c * m, *images.shape[2:])
        if (x0_images is None) != (self.x0_step is None):
            raise NoiseSearchError(f"reward '{self._reward_name}' " + (
                f"compares each final image with its own trajectory's x0 prediction at sigma {self.reward.x0_sigma}, "
                "which only the final scoring of an algorithm that scores whole trajectories gives (e.g. best_of_n)"
                if x0_images is None else "takes no x0 predictions"))
        extra = [] if x0_images is None else [x0_images.reshape(flat.shape)]
        scores = self._batched(self._reward_rows, [flat, cond, *extra])
        if not bool(torch.isfinite(scores).all()):
            raise NoiseSearchError(f"reward '{self._reward_name}' returned NaN or inf for finite images: check the "
                                   "reward function")
        scores = scores.reshape(c, m)
        if self.keep_candidates and m > 1:
            self.candidates |= {int(k): (images[row].detach().cpu(), scores[row].detach().cpu())
                                for row, k in enumerate(idx.tolist())}
        return scores

    @property
    def _reward_name(self) -> str:
        return getattr(self.reward, "name", type(self.reward).__name__)

    def _reward_rows(self, images: torch.Tensor, cond: torch.Tensor, *x0_images: torch.Tensor) -> torch.Tensor:
        """The reward of one chunk (with the x0 predictions of its images where the reward needs them), checked to
        be a float tensor of one score per image."""
        out = self.reward(images, cond, *x0_images)
        if not isinstance(out, torch.Tensor) or out.shape != (images.shape[0],) or not out.dtype.is_floating_point:
            raise NoiseSearchError(f"reward '{self._reward_name}' returned {describe_output(out)} for "
                                   f"{images.shape[0]} images: it must return a float tensor of shape "
                                   f"({images.shape[0]},), one score per image")
        return out

    def initial_state(self, noise: torch.Tensor) -> torch.Tensor:
        """State at the sampler's first sigma from standard normal noise (no NFE)."""
        return self.sampler.initial_state(noise)

    def propose(self, x: torch.Tensor, i: int, noise: torch.Tensor | None, which=None) -> Proposal:
        """Inject `noise` at step i and predict x0 from the noised state: 1 call per candidate."""
        x_hat = self.sampler.propose(x, i, noise)
        return Proposal(i, x_hat, self.denoise(x_hat, self.sampler.sigma_hats[i], which, step=i))

    def advance(self, proposal: Proposal, which=None) -> StepOut:
        """Finish the step of a proposal with the sampler's solver, reusing its x0 prediction."""
        x_next, x0_next = self.sampler.advance(lambda x, s: self.denoise(x, s, which, step=proposal.step),
                                               proposal.x_hat, proposal.x0_hat, proposal.step)
        return StepOut(x_next, proposal.x0_hat, x0_next)

    def step(self, x: torch.Tensor, i: int, noise: torch.Tensor | None, which=None) -> StepOut:
        """One full sampler step with explicit noise."""
        return self.advance(self.propose(x, i, noise, which), which)
