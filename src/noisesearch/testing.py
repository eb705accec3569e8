"""The contract suite every search algorithm must pass, importable by anyone who registers one.

    from noisesearch.testing import Contract
    Contract(MyAlgorithm(N=2)).check_all()                        # raises AssertionError on a broken contract
    Contract(MyAlgorithm(N=2), sampler=make_sampler("euler", 6)).check_all()

or one pytest test per check: parametrize over `CHECKS` and call `getattr(contract, check)()`.
The checks run the algorithm through a metered Problem on a tiny randomly initialised model of the
embedded architecture (no weights needed): the NFE it reports equals the metered count and its
documented formula, a hard budget is never exceeded, the same seeds give bit-identical images, a
condition's result does not depend on the other conditions in the batch (the Problem's batch-invariant mode,
which the checks use; for algorithms that learn across conditions, on none after it), the default mode pays
for no padding and is reproducible, the returned reward is the reward of the returned image, an elitist
incumbent never gets worse within a step, latent denoisers are decoded for rewards and results, and a reward that
needs each final image's own x0 prediction at an earlier step (the self-supervised verifiers) gets it at no extra
NFE from algorithms that score whole trajectories and is refused by the others. With a set-level reward
(SET_LEVEL_CHECKS) a condition's result depends only on the conditions before it, or the algorithm refuses such a
reward in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch

from noisesearch.backends.embedded import EmbeddedDenoiser
from noisesearch.denoiser import Denoiser, DenoiserBase
from noisesearch.errors import BudgetExceeded, NoiseSearchError
from noisesearch.models.unet import EDMPrecond, UNetConfig
from noisesearch.problem import Problem
from noisesearch.rewards import get_reward
from noisesearch.sampling import Sampler, make_sampler, sampler_from_dict
from noisesearch.search.base import SearchAlgorithm
from noisesearch.types import Proposal, SearchResult, Trace

TINY = UNetConfig(channels=(8, 16), emb_dim=16)
LABELS, SEEDS = (2, 7, 1, 8, 2, 8, 1, 8), tuple(range(20, 28))
CHECKS = ("check_metered_nfe_equals_documented_formula", "check_hard_budget_is_never_exceeded",
          "check_same_seed_is_bit_identical", "check_batch_of_one_equals_batch_of_eight",
          "check_returned_reward_is_the_reward_of_the_returned_image",
          "check_elitist_incumbent_never_gets_worse_within_a_step",
          "check_latent_denoisers_are_decoded_for_rewards_and_results",
          "check_default_mode_pads_nothing_and_is_reproducible",
          "check_x0_reward_is_paired_at_no_extra_nfe_or_refused")
SET_LEVEL_CHECKS = ("check_set_level_results_depend_only_on_conditions_before",)  # with SetLevelToy, its own Problems


class SetLevelToy:
    """A set-level reward for the contract suite, cheap (no network): a candidate's mean squared distance from the
    mean of the images committed so far (its brightness while none is), so each choice depends on those before."""

    name = "set_level_toy"
    set_level = True

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total, self.count = torch.zeros(()), 0

    def commit(self, images: torch.Tensor, cond: torch.Tensor) -> None:
        self.total = self.total + images.sum(dim=0)
        self.count += images.shape[0]

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.count == 0:
            return ((images.clamp(-1, 1) + 1) / 2).flatten(1).mean(1)
        return (images - self.total / self.count).square().flatten(1).mean(1)


def tiny_denoiser(guidance: float = 1.0, seed: int = 0) -> EmbeddedDenoiser:
    """The embedded architecture at toy width with random weights (perturbed so that it is not the identity)."""
    torch.manual_seed(seed)
    model = EDMPrecond(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return EmbeddedDenoiser(model, guidance)


class LatentToyDenoiser(DenoiserBase):
    """A denoiser over (2, 4, 4) latents whose images are (1, 8, 8): decode averages the channels and
    upsamples; the exact Gaussian denoiser of data ~ N(0, 0.25 I) in latent space. Records the rows of
    each decode call."""

    image_shape = (2, 4, 4)
    latent = True

    def __init__(self) -> None:
        self.decoded_rows: list[int] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x * 0.25 / (sigma.reshape(-1, 1, 1, 1) ** 2 + 0.25)

    def decode(self, states: torch.Tensor) -> torch.Tensor:
        self.decoded_rows.append(states.shape[0])
        return torch.nn.functional.interpolate(states.mean(1, keepdim=True), scale_factor=2.0)


class CallRecorder:
    """A denoiser wrapper that records the rows of every call (`rows`), to check or replay call sizes."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser, self.rows = denoiser, []

    def __getattr__(self, name: str):
        return getattr(self.denoiser, name)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.denoiser(x, sigma, cond)


class PredictionRecorder(CallRecorder):
    """A denoiser wrapper that also keeps the input and output rows of its calls at sigma `sigma`."""

    def __init__(self, denoiser: Denoiser, sigma: float) -> None:
        super().__init__(denoiser)
        self.sigma, self.inputs, self.outputs = sigma, [], []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = super().__call__(x, sigma, cond)
        at = sigma == self.sigma
        self.inputs.append(x[at])
        self.outputs.append(out[at])
        return out


class X0Consistency:
    """A reward that declares x0_sigma, as the self-supervised verifiers do: minus the mean squared difference of
    each final image and its x0 prediction. Keeps every (images, cond, x0_images, scores) it was given."""

    name = "x0_consistency"

    def __init__(self, x0_sigma: float) -> None:
        self.x0_sigma, self.seen = x0_sigma, []

    def __call__(self, images: torch.Tensor, cond: torch.Tensor, x0_images: torch.Tensor) -> torch.Tensor:
        scores = -(images - x0_images).flatten(1).pow(2).mean(1)
        self.seen.append((images, cond, x0_images, scores))
        return scores


def churn_before(sampler: Sampler, step: int) -> Sampler:
    """`sampler` with noise injected only before step `step` (its churn window's S_min moved between sigma_{step-1}
    and sigma_step), so that from `step` on it is deterministic."""
    s_min = float(sampler.sigmas[step - 1] + sampler.sigmas[step]) / 2
    settings = sampler.to_dict()
    return sampler_from_dict({**settings, "S_min": s_min, "S_max": max(settings["S_max"], s_min)})


class Contract:
    """The contract checks of one algorithm (with its parameters) on one sampler; each check raises an
    AssertionError naming what broke. The reference run on all conditions is made once and shared."""

    def __init__(self, algorithm: SearchAlgorithm, sampler: Sampler | None = None, denoiser: Denoiser | None = None,
                 reward: str = "brightness", labels: Sequence[int] = LABELS, seeds: Sequence[int] = SEEDS) -> None:
        self.algorithm = algorithm
        self.sampler = sampler if sampler is not None else make_sampler("heun", 6)
        self.denoiser = denoiser if denoiser is not None else tiny_denoiser()
        self.reward = get_reward(reward)
        self.labels, self.seeds = list(labels), list(seeds)

    def problem(self, labels: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
                denoiser: Denoiser | None = None, nfe_budget: int | None = None, batch_invariant: bool = True
                ) -> Problem:
        return Problem(denoiser or self.denoiser, self.reward, torch.tensor(labels or self.labels),
                       seeds or self.seeds, self.sampler, nfe_budget=nfe_budget, batch_invariant=batch_invariant)

    def run(self, **problem_args) -> tuple[Problem, SearchResult]:
        problem = self.problem(**problem_args)
        return problem, self.algorithm.run(problem)

    @cached_property
    def reference(self) -> tuple[Problem, SearchResult]:
        return self.run()

    def check_all(self) -> None:
        for check in CHECKS + SET_LEVEL_CHECKS:
            getattr(self, check)()

    def check_metered_nfe_equals_documented_formula(self) -> None:
        problem, result = self.reference
        expected = self.algorithm.expected_calls(self.sampler, result) * self.denoiser.nfe_per_call
        assert torch.equal(result.nfe, expected), f"metered NFE {result.nfe.tolist()} != formula {expected.tolist()}"
        assert torch.equal(result.nfe, problem.nfe), "the result's NFE is not the Problem's metered count"

    def check_hard_budget_is_never_exceeded(self) -> None:
        need = int(self.reference[1].nfe.max())
        tight = self.problem(nfe_budget=need - 1)
        try:
            self.algorithm.run(tight)
        except BudgetExceeded:
            pass
        else:
            raise AssertionError(f"a budget of {need - 1} NFE below the {need} used raised no BudgetExceeded")
        assert int(tight.nfe.max()) <= need - 1, "a condition spent more than the hard budget"

    def check_same_seed_is_bit_identical(self) -> None:
        a, b = self.reference[1], self.run()[1]
        assert torch.equal(a.images, b.images) and torch.equal(a.rewards, b.rewards), "same seeds, different images"

    def check_batch_of_one_equals_batch_of_eight(self) -> None:
        """An algorithm that learns across conditions (class attribute learns_across_conditions) is run on the
        conditions up to k instead of k alone: its result for k may depend on those before it, never after."""
        full = self.reference[1]
        stream = self.algorithm.learns_across_conditions
        for k in (0, len(self.labels) - 3):
            first = 0 if stream else k
            part = self.run(labels=self.labels[first:k + 1], seeds=self.seeds[first:k + 1])[1]
            assert torch.equal(part.images[-1], full.images[k]), \
                f"condition {k} {'after those before it' if stream else 'alone'} differs from it in the batch"
            assert torch.equal(part.rewards[-1], full.rewards[k])

    def check_returned_reward_is_the_reward_of_the_returned_image(self) -> None:
        problem, result = self.reference
        assert torch.equal(result.rewards, problem.score_images(result.images[:, None])[:, 0]), \
            "the returned rewards are not those of the returned images"
        assert result.images.min() >= -1 and result.images.max() <= 1, "images outside [-1, 1]"

    def check_elitist_incumbent_never_gets_worse_within_a_step(self) -> None:
        """Elitist local searches only (parameter elitism=True); others pass trivially."""
        if not self.algorithm.params().get("elitism"):
            return
        trace = self.reference[1].trace
        assert isinstance(trace, Trace) and len(trace) > 0, "an elitist search recorded no per-step trace"
        for c in range(len(self.labels)):
            for step in torch.unique(trace.step).tolist():
                at = (trace.condition == c) & (trace.step == step)
                assert torch.equal(trace.incumbent_score[at], torch.cummax(trace.winner_score[at], dim=0).values), \
                    f"the incumbent of condition {c} got worse at step {step}"

    def check_set_level_results_depend_only_on_conditions_before(self, n: int = 3, k: int = 2) -> None:
        """With a set-level reward (SetLevelToy) conditions go in order, one at a time: the results for the first k
        of n conditions equal (torch.equal) a run over those k alone, each returned reward is its image's score
        against the images before it, and the NFE is the metered count and the formula. An algorithm that learns
        across conditions must refuse such a reward in one line instead."""
        def run(m: int) -> tuple[Problem, SearchResult]:
            problem = Problem(self.denoiser, SetLevelToy(), torch.tensor(self.labels[:m]), self.seeds[:m],
                              self.sampler, batch_invariant=True)  # decoders' last bits vary with the rows per call
            return problem, self.algorithm.run(problem)

        if self.algorithm.learns_across_conditions:
            try:
                run(n)
            except NoiseSearchError as err:
                assert "\n" not in str(err) and "set-level" in str(err), f"not a one-line refusal: {err}"
                return
            raise AssertionError(f"{self.algorithm.name} learns across conditions but accepted a set-level reward")
        problem, full = run(n)
        part = run(k)[1]
        for name in ("images", "rewards", "nfe"):
            assert torch.equal(getattr(part, name), getattr(full, name)[:k]), \
                f"the {name} of the first {k} conditions depend on the conditions after them"
        expected = self.algorithm.expected_calls(self.sampler, full) * self.denoiser.nfe_per_call
        assert torch.equal(full.nfe, expected) and torch.equal(full.nfe, problem.nfe), "NFE not metered exactly"
        problem.reset_set()
        for c in range(n):
            assert torch.equal(problem.score_images(full.images[c:c + 1, None], [c])[0, 0], full.rewards[c]), \
                f"the reward of condition {c} is not its image's score against the images before it"
            problem.commit(full.images[c:c + 1], [c])

    def check_latent_denoisers_are_decoded_for_rewards_and_results(self) -> None:
        denoiser = LatentToyDenoiser()
        problem, result = self.run(denoiser=denoiser)
        assert result.images.shape == (len(self.labels), 1, 8, 8), "results are not decoded images"
        assert torch.equal(result.rewards, problem.score_images(result.images[:, None])[:, 0])
        assert set(denoiser.decoded_rows) == {problem.max_batch}, "decoding is not in fixed-shape chunks"

    def check_default_mode_pads_nothing_and_is_reproducible(self) -> None:
        runs = [self.run(batch_invariant=False) for _ in range(2)]
        (problem, a), (_, b) = runs
        assert problem.padded_rows == 0, f"the default mode padded {problem.padded_rows} rows"
        assert torch.equal(a.images, b.images) and torch.equal(a.nfe, b.nfe), "the same command gave other images"
        expected = self.algorithm.expected_calls(self.sampler, a) * self.denoiser.nfe_per_call
        assert torch.equal(a.nfe, expected), f"metered NFE {a.nfe.tolist()} != formula {expected.tolist()}"

    def check_x0_reward_is_paired_at_no_extra_nfe_or_refused(self) -> None:
        """A reward that declares x0_sigma (the self-supervised verifiers) costs an algorithm that scores whole
        trajectories (scores_whole_trajectories) no extra NFE, and gets each final image with its own trajectory's
        x0 prediction at the step nearest x0_sigma: on a sampler deterministic from that step on, rolling the state
        that prediction came from out to the end gives exactly the image it was paired with. Every other algorithm
        refuses such a reward with one line before any denoiser call."""
        step = self.sampler.steps // 2
        sampler = churn_before(self.sampler, step)
        reward = X0Consistency(1.05 * float(sampler.sigma_hats[step]))
        recorder = PredictionRecorder(self.denoiser, float(sampler.sigma_hats[step]))
        problem = Problem(recorder, reward, torch.tensor(self.labels), self.seeds, sampler, batch_invariant=True)
        assert problem.x0_step == step, f"the x0 step is {problem.x0_step}, not the nearest, {step}"
        if not self.algorithm.scores_whole_trajectories:
            try:
                self.algorithm.run(problem)
            except NoiseSearchError as err:
                assert "\n" not in str(err), "the refusal is more than one line"
            else:
                raise AssertionError("an algorithm that does not score whole trajectories took an x0 reward")
            assert int(problem.nfe.sum()) == 0, "the refusal came after denoiser calls"
            return
        result = self.algorithm.run(problem)
        expected = self.algorithm.expected_calls(sampler, result) * self.denoiser.nfe_per_call
        assert torch.equal(result.nfe, expected), f"metered NFE {result.nfe.tolist()} != formula {expected.tolist()}"
        images, cond, x0_images, scores = (torch.cat(parts) for parts in zip(*reward.seen, strict=True))
        inputs, outputs = torch.cat(recorder.inputs), torch.cat(recorder.outputs)
        predictions = problem.to_images(outputs[:, None])[:, 0]
        source = [next((j for j in range(len(predictions)) if torch.equal(predictions[j], row)), None)
                  for row in x0_images]
        assert None not in source, "the reward got an x0 that no denoiser call at the x0 step's sigma made"
        replay = Problem(self.denoiser, reward, cond, list(range(len(cond))), sampler, batch_invariant=True)
        x = replay.advance(Proposal(step, inputs[source][:, None], outputs[source][:, None])).x_next
        for i in range(step + 1, sampler.steps):
            x = replay.step(x, i, None).x_next
        assert torch.allclose(replay.to_images(x)[:, 0], images, atol=1e-5), \
            "an image was scored with an x0 prediction of another trajectory"
        for c in range(len(self.labels)):
            paired = [k for k in range(len(images)) if torch.equal(images[k], result.images[c])]
            assert paired and bool((scores[paired] == result.rewards[c]).any()), \
                f"condition {c}'s returned reward is not its image's score with its own x0"
