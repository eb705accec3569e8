"""How well the reward of a step's x0 prediction predicts the final reward: R(σ), the third adaptive idea of
Ramesh and Mardani, *Test-Time Scaling of Diffusion Models via Noise Trajectory Search* ("learn how good the
reward model is as a function of time").

At each searchable step i of a condition's naive trajectory, M candidate noises are injected and scored as
ε-greedy scores them (the reward of the x0 prediction at sigma_hat_i); each candidate is then finished to x0
with the same later noise for all M (common random numbers, so that only the step-i choice differs), and
R_c(σ_i) is the Spearman rank correlation between the M early and the M final rewards. R(σ) near 1: the
early reward ranks candidates as the final one will, and exploiting there pays; near 0: choosing by the
early reward is a coin toss.

`reliability_gains` turns R into a search schedule's gains (the `reliability` calibration method, the paper's
rule: exploit only where R is high): choosing the best of m candidates by a score that correlates R with the
final reward gains R·s·e_m in it, s the spread of the candidates' final rewards and e_m the expected maximum
of m standard normals (a Gaussian model of early and final rewards); k iterations of N candidates choose among
m = 1 + kN (the pivot and its challengers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.plotting import pyplot
from noisesearch.problem import Problem
from noisesearch.search.tracing import bootstrap_interval

CANDIDATES = 8  # candidates per step and condition of a probe, unless told


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length 1-D arrays (ties get their mean rank); NaN if either
    is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of `values`, tied values sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


@dataclass(frozen=True)
class Reliability:
    """R_c(σ) of every searchable step (rows, at `sigmas`) and condition (columns); NaN where a condition's
    early or final rewards were all equal."""

    sigmas: np.ndarray
    per_condition: np.ndarray
    candidates: int
    spread: np.ndarray | None = None  # standard deviation of the candidates' final rewards, as per_condition

    def summary(self, level: float = 0.9) -> list[dict[str, float]]:
        """Per step: sigma, the mean of R over conditions and its bootstrap interval at `level`."""
        rows = []
        for sigma, values in zip(self.sigmas, self.per_condition, strict=True):
            mean, lo, hi = bootstrap_interval(values, level=level)
            rows.append({"sigma": float(sigma), "R": mean, "lo": lo, "hi": hi})
        return rows

    def to_dict(self) -> dict:
        spread = None if self.spread is None else self.spread.mean(axis=1).tolist()
        return {"candidates": self.candidates, "sigmas": self.sigmas.tolist(), "steps": self.summary(),
                "spread": spread,
                "per_condition": [[None if v != v else v for v in row] for row in self.per_condition.tolist()]}


def probe_reliability(problem: Problem, candidates: int = CANDIDATES) -> Reliability:
    """R(σ) of `problem`'s reward on its sampler, from `candidates` candidates per step and condition.

    Costs per condition cost.reliability_probe_calls(sampler, candidates) calls: one naive trajectory and, per
    searchable step i, `candidates` times the calls from step i to the end; every call goes through the
    metered `problem`."""
    if not isinstance(candidates, int) or candidates < 2:
        raise NoiseSearchError(f"a rank correlation needs at least 2 candidates, got {candidates}")
    sampler, shape = problem.sampler, problem.image_shape
    searchable = sampler.searchable_steps()
    problem.start_progress(cost.nfe(cost.reliability_probe_calls(sampler, candidates), problem.denoiser),
                           "reliability")
    gens = problem.generators()
    x = problem.initial_state(gens.randn(1, *shape))
    later = [gens.randn(1, *shape) if i in searchable else None for i in range(sampler.steps)]
    rho = np.full((len(searchable), problem.n), np.nan)
    spread = np.zeros((len(searchable), problem.n))
    for i in range(sampler.steps):
        if i in searchable:
            proposal = problem.propose(x.expand(-1, candidates, *shape), i, gens.randn(candidates, *shape))
            early = problem.score(proposal.x0_hat)
            y = problem.advance(proposal).x_next
            for j in range(i + 1, sampler.steps):
                noise = None if later[j] is None else later[j].expand(-1, candidates, *shape)
                y = problem.step(y, j, noise).x_next
            final = problem.score(y)
            spread[searchable.index(i)] = final.double().std(dim=1).numpy()
            rho[searchable.index(i)] = [rank_correlation(e, f) for e, f in
                                        zip(early.double().numpy(), final.double().numpy(), strict=True)]
        x = problem.step(x, i, later[i]).x_next
    problem.close_progress()
    sigmas = np.array([float(sampler.sigma_hats[i]) for i in searchable])
    return Reliability(sigmas, rho, candidates, spread)


def expected_maxima(M: int) -> np.ndarray:
    """e_m = E[max of m independent standard normals] for m = 1..M (e_1 = 0), by quadrature."""
    from scipy.stats import norm

    x = np.linspace(-9.0, 9.0, 20_001)
    e = [float(np.trapezoid(x * m * norm.pdf(x) * norm.cdf(x) ** (m - 1), x)) for m in range(2, M + 1)]
    return np.array([0.0, *e])


def reliability_gains(curve: Reliability, K: int, N: int) -> tuple[list[list[float]], list[float]]:
    """Per searchable step, the expected final-reward gain of each iteration k = 1..K of N candidates,
    R⁺·s·(e_(1+kN) − e_(1+(k−1)N)) (R⁺ = max(R, 0), s the mean spread over conditions), and ε = 1 − R⁺: global
    draws where the early reward says little, local refinement where it ranks candidates well."""
    if curve.spread is None:
        raise NoiseSearchError("this reliability probe kept no spread of final rewards: probe again")
    R = np.array([max(row["R"], 0.0) if row["R"] == row["R"] else 0.0 for row in curve.summary()])
    steps = np.diff(expected_maxima(1 + K * N)[::N])
    gains = [(r * s * steps).tolist() for r, s in zip(R, curve.spread.mean(axis=1), strict=True)]
    return gains, (1.0 - R).tolist()


def reliability_plot(curves: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """R(σ) of each reward (name → its `Reliability.summary()` rows) with bootstrap intervals, as a PNG at
    `path`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, rows in curves.items():
        mean = np.array([r["R"] for r in rows])
        errors = [mean - [r["lo"] for r in rows], [r["hi"] for r in rows] - mean]
        ax.errorbar([r["sigma"] for r in rows], mean, yerr=errors, marker="o", capsize=2, label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("σ̂_t (log)")
    ax.set_ylabel("R(σ): rank correlation, early vs final reward")
    ax.set_title("How well the x0-prediction reward predicts the final reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

