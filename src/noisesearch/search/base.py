"""The SearchAlgorithm base (a frozen dataclass whose fields are its parameters) and the shared argument checks."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from noisesearch import cost
from noisesearch.checks import is_flag, is_int, is_real, shown
from noisesearch.errors import BudgetExceeded, NoiseSearchError, NoiseSearchWarning
from noisesearch.problem import Problem
from noisesearch.rewards.registry import is_set_level, reward_label
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.types import SearchResult, SearchTrace

CALLS_DOC = "c_i = the sampler's calls of step i (Heun: 2, 1 at the last step; Euler: 1)"


def check_positive_int(**values: object) -> None:
    """A one-line error for any value that is not an integer of at least 1."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise NoiseSearchError(f"{name} must be an integer of at least 1, got {shown(value)}")


# What a parameter's annotation (as written in its dataclass field) requires of a value, checked by
# SearchAlgorithm.check_param_types before the algorithm is built; other annotations are each algorithm's to check.
PARAM_TYPES = {
    "bool": (is_flag, "True or False"),
    "int": (is_int, "an integer"),
    "float": (is_real, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def check_beams(beams: object) -> tuple[int, ...]:
    """Numbers B of incumbents to choose among, as a tuple: a non-empty list of integers of at least 1."""
    if (not isinstance(beams, (list, tuple)) or not beams
            or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in beams)):
        raise NoiseSearchError(f"beams must be a non-empty list of integers of at least 1, got {beams}")
    return tuple(beams)


def check_eps(eps: float, name: str = "eps") -> None:
    """A one-line error unless the global-draw probability lies in [0, 1]."""
    if not 0 <= eps <= 1:
        raise NoiseSearchError(f"{name} must lie in [0, 1], got {eps}")


def check_lambda(lambda_: float) -> None:
    """A one-line error unless the local-draw radius is positive."""
    if not (math.isfinite(lambda_) and lambda_ > 0):
        raise NoiseSearchError(f"lambda_ must be a positive finite number, got {lambda_}")


@dataclass(frozen=True)
class RunContext:
    """What an algorithm's run-dependent defaults may depend on, known before the model loads: the backend, whether
    the model is the user's own (a path, denoiser or pipeline, not the backend's packaged one), the reward (a
    registered name or a reward object) and the guidance weight."""

    backend: str
    own_model: bool
    reward: object
    guidance: float


@dataclass(frozen=True)
class SearchAlgorithm:
    """Chooses the sampler's noises through a metered Problem.

    Subclasses set `name` and `family`, declare their parameters as dataclass fields, document their NFE formula
    in `nfe_doc` (in the sampler's calls per step c_i, so that it holds for every solver), compute it
    in `nfe_formula` through `noisesearch.cost`, and implement `_search`, which returns one final
    sampler state per condition (in the denoiser's space: pixels, or latents that the Problem decodes),
    its reward and, for per-step searches, a trace. A renamed parameter keeps its old name for a release
    through `renamed` ({old: new}, which get_algorithm applies).
    """

    name: ClassVar[str] = ""
    nfe_doc: ClassVar[str] = ""
    searches_step_noise: ClassVar[bool] = False  # True where the search chooses the noise of sampler steps
    learns_across_conditions: ClassVar[bool] = False  # True where a condition's result depends on those before it
    # True where the search scores final states only, each with its own trajectory's x0 predictions at hand (what a
    # reward declaring x0_sigma needs: the self-supervised verifiers); see run_trajectories
    scores_whole_trajectories: ClassVar[bool] = False
    renamed: ClassVar[dict[str, str]] = {}  # {old parameter name: new}: old names work until the next release
    # The kind of search, by which reports group algorithms without naming them: "baseline" (no search),
    # "reference" (the paper's ε-greedy, whose gain others are measured against), "initial", "tree", "local",
    # "paths", "particles", "value_decoding", "evolutionary", "budget_forcing", "adaptive", "online", "window";
    # "" for none of them.
    family: ClassVar[str] = ""
    source: ClassVar[str] = ""  # the paper (and code) it comes from, in Markdown, for the docs' family pages
    # The parameter (if any) in which the search is anytime: its run with value p is the first p rounds of any run
    # with a larger value (the same draws), which `rounds` yields one by one; bench computes cells that differ
    # only in it from one run (experiments.pools)
    anytime: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Append the NFE formula to the docstring, so that `help()` and the docs show it."""
        super().__init_subclass__(**kwargs)
        if cls.nfe_doc and cls.__doc__ and "NFE per image:" not in cls.__doc__:
            cls.__doc__ = (f"{cls.__doc__.rstrip()}\n\n    NFE per image: {cls.nfe_doc}; ×2 with classifier-free "
                           "guidance.")

    @classmethod
    def context_params(cls, params: dict[str, Any], context: RunContext) -> dict[str, Any]:
        """Parameters that `params` leave out and whose default depends on the run (e.g. a search schedule shipped
        for this model and reward); `search` adds them before constructing the algorithm. None by default."""
        return {}

    @classmethod
    def check_param_types(cls, params: dict[str, Any]) -> None:
        """A one-line error for a parameter whose value does not have its field's simple type (bool, int, float,
        str, or one of them | None): a string where a boolean or number belongs is refused rather than counted as
        true or compared with numbers. Ints are fine where floats are typed; bools are neither ints nor numbers."""
        declared = {f.name: f.type for f in fields(cls) if f.init}
        for name, value in params.items():
            annotation = declared.get(name)
            text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
            optional = text.endswith(" | None")
            kind = PARAM_TYPES.get(text.removesuffix(" | None"))
            if kind is None or (optional and value is None):
                continue
            accepts, what = kind
            if not accepts(value):
                raise NoiseSearchError(f"{cls.name}: {name} must be {what}{' or None' if optional else ''}, got "
                                       f"{shown(value)}")

    @classmethod
    def check_no_nan(cls, params: dict[str, Any]) -> None:
        """A one-line error for a NaN in a parameter typed float (after the algorithm's own checks, whose messages
        say more, had their turn)."""
        floats = {f.name for f in fields(cls) if f.init and str(f.type).removesuffix(" | None") == "float"}
        for name, value in params.items():
            if name in floats and is_real(value) and math.isnan(value):
                raise NoiseSearchError(f"{cls.name}: {name} must be a number, not NaN")

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def nfe_formula(self, sampler: Sampler) -> int | None:
        """Denoiser calls per image (×2 with classifier-free guidance); None where it depends on the run."""
        raise NotImplementedError

    def nfe_estimate(self, sampler: Sampler) -> int:
        """Denoiser calls per image to expect before running (the formula where it is exact)."""
        return self.nfe_formula(sampler)

    def expected_calls(self, sampler: Sampler, result: SearchResult) -> torch.Tensor:
        """Denoiser calls per image that the documented formula gives for this result, (C,)."""
        return torch.full_like(result.nfe, self.nfe_formula(sampler))

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, SearchTrace | None]:
        raise NotImplementedError

    def run(self, problem: Problem) -> SearchResult:
        """Search every condition of `problem` and return the chosen images with their rewards.

        Where the NFE formula is exact, a hard budget it cannot meet is a BudgetExceeded before any call."""
        self.check_reward(problem.reward)
        self.check_budget(problem)
        if self.searches_step_noise and not problem.sampler.searchable_steps():
            warnings.warn(f"{self.name}: the sampler injects noise at none of its {problem.sampler.steps} steps, so "
                          "there is no step noise to search: use more steps or a sampler with churn",
                          NoiseSearchWarning, stacklevel=2)
        check_set_level(self, problem.reward)
        start = time.perf_counter()
        problem.start_progress(cost.nfe(self.nfe_estimate(problem.sampler), problem.denoiser), self.name)
        try:
            if problem.set_level:
                images, rewards, trace = self._search_in_order(problem)
            else:
                states, rewards, trace = self._search(problem)
                images = problem.to_images(states[:, None])[:, 0]
        finally:
            problem.close_progress()
        return SearchResult(
            images=images,
            rewards=rewards,
            nfe=problem.nfe.clone(),
            wall_time=time.perf_counter() - start,
            config={"algorithm": self.name, "params": self.params()},
            trace=trace,
        )

    def _search_in_order(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, SearchTrace | None]:
        """The images, rewards and trace of a search with a set-level reward: each condition searched alone (a
        part of `problem`, whose meter it is charged to), in order, its chosen image committed to the reward's set
        before the next is searched, so that a condition's result depends only on the conditions before it."""
        problem.reset_set()
        images, rewards, traces, parts = [], [], [], []
        for c in range(problem.n):
            with problem.part([c]) as sub:
                states, reward, trace = self._search(sub)
                image = sub.to_images(states[:, None])[:, 0]
            problem.commit(image, [c])
            images.append(image)
            rewards.append(reward)
            traces.append(trace)
            parts.append(torch.tensor([c]))
        joined = None if traces[0] is None else type(traces[0]).concatenated(traces, parts)
        return torch.cat(images), torch.cat(rewards), joined

    def check_reward(self, reward: object) -> None:
        """A one-line error, before any call, for a reward (an object or its class) that this search cannot feed:
        one declaring x0_sigma needs each final image's own trajectory's x0 prediction, which searches that score
        intermediate states or splice trajectories cannot give; the message names those that can."""
        sigma = getattr(reward, "x0_sigma", None)
        if sigma is None or self.scores_whole_trajectories:
            return
        able = sorted({cls.name for cls in subclasses(SearchAlgorithm)  # not a class made inside a function (a test's)
                       if cls.scores_whole_trajectories and cls.name and "<locals>" not in cls.__qualname__})
        raise NoiseSearchError(f"{self.name} cannot use reward '{getattr(reward, 'name', reward)}': it compares each "
                               f"final image with its own trajectory's x0 prediction at sigma {sigma}, which only "
                               f"searches over whole trajectories keep: use {', '.join(able)}")

    def rounds(self, problem: Problem) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For an anytime search: the chosen states (C, ...) and rewards (C,) after each round, in order."""
        raise NotImplementedError(f"{self.name} is not an anytime search")

    def check_budget(self, problem: Problem) -> None:
        formula = self.nfe_formula(problem.sampler)
        if problem.nfe_budget is None or formula is None:
            return
        need = int(problem.nfe.max()) + cost.nfe(formula, problem.denoiser)
        if need > problem.nfe_budget:
            raise BudgetExceeded(f"{self.name} needs {need} NFE per image by its formula, over the hard budget of "
                                 f"{problem.nfe_budget}: raise the budget or lower the search parameters")


def check_set_level(algorithm: type[SearchAlgorithm] | SearchAlgorithm, reward: object) -> None:
    """A one-line NoiseSearchError for a set-level reward (a name or object) given to an algorithm that learns
    across conditions: a set-level reward searches the conditions one at a time, in order, which such an algorithm
    (sharing what it learns within a batch of conditions) cannot honour."""
    if algorithm.learns_across_conditions and is_set_level(reward):
        raise NoiseSearchError(f"{algorithm.name} learns across batches of conditions and cannot search with the "
                               f"set-level reward '{reward_label(reward)}', whose conditions go one at a time in "
                               "order: use an algorithm that searches each condition alone (e.g. best_of_n, "
                               "zero_order, paths)")


def run_steps(problem: Problem, gens: SampleGenerators, x: torch.Tensor, start: int, stop: int,
              which: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sampler steps start..stop-1 on x (C', M, ...) with fresh noise from each condition's generator at
    searchable steps; returns the state and the last step's x0 prediction (None if no step ran)."""
    searchable = set(problem.sampler.searchable_steps())
    x0_hat = None
    for i in range(start, stop):
        noise = gens.randn(x.shape[1], *x.shape[2:], which=which) if i in searchable else None
        out = problem.step(x, i, noise, which)
        x, x0_hat = out.x_next, out.x0_hat
    return x, x0_hat


def run_trajectories(problem: Problem, gens: SampleGenerators, x: torch.Tensor, which: Sequence[int] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All sampler steps on x (C', M, ...) as run_steps does; returns the final states and, where the Problem's reward
    needs them (problem.x0_step), each row's x0 prediction at that step (else None), for problem.score(x, x0=...)."""
    step = problem.x0_step
    if step is None:
        return run_steps(problem, gens, x, 0, problem.sampler.steps, which)[0], None
    x, x0 = run_steps(problem, gens, x, 0, step + 1, which)
    return run_steps(problem, gens, x, step + 1, problem.sampler.steps, which)[0], x0


def fixed_step_noise(problem: Problem, gens: SampleGenerators) -> dict[int, torch.Tensor]:
    """One noise (C, ...) per searchable step, drawn from each condition's generator: the step noises that a
    search over the initial noise holds fixed across its candidates."""
    searchable = problem.sampler.searchable_steps()
    return dict(zip(searchable, gens.randn(len(searchable), *problem.image_shape).unbind(1), strict=True))


def run_with_step_noise(problem: Problem, noise: torch.Tensor, step_noise: dict[int, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every sampler step from initial noises (C, M, ...), a condition's candidates sharing its `step_noise`; the
    final states and, where the reward needs them (problem.x0_step), each row's x0 prediction at that step."""
    x, x0 = problem.initial_state(noise), None
    for i in range(problem.sampler.steps):
        out = problem.step(x, i, step_noise[i][:, None].expand_as(x) if i in step_noise else None)
        x, x0 = out.x_next, out.x0_hat if i == problem.x0_step else x0
    return x, x0


def keep_improvements(best: torch.Tensor, scores: torch.Tensor, kept: Sequence[torch.Tensor],
                      offered: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per condition where a round's best score (scores (C, M)) beats `best` (C,): that score, and its rows of
    `offered` (each (C, M, ...)) in place of `kept` (each (C, ...)); elsewhere `best` and `kept` as they were."""
    rows = torch.arange(scores.shape[0])
    win = scores.argmax(dim=1)
    better = scores[rows, win] > best
    updated = [torch.where(better.view(-1, *[1] * (old.dim() - 1)), new[rows, win], old)
               for old, new in zip(kept, offered, strict=True)]
    return torch.where(better, scores[rows, win], best), updated


def subclasses(cls: type) -> list[type]:
    """Every subclass of `cls`, at any depth."""
    found = cls.__subclasses__()
    return found + [deeper for sub in found for deeper in subclasses(sub)]


def select_best(images: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per condition, the image (C, M, ...) with the highest score (C, M); ties go to the first."""
    best = scores.argmax(dim=1)
    rows = torch.arange(images.shape[0])
    return images[rows, best], scores[rows, best]


def inverse_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices (C, n) drawn from the normalised weights (C, K) of each row at its uniforms u (C, n) in [0, 1)."""
    return torch.searchsorted(weights.cumsum(dim=1), u.contiguous(), right=True).clamp(max=weights.shape[1] - 1)
