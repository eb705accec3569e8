"""Fitting a SearchSchedule from the traces of ε-greedy runs on calibration conditions.

Three fits of K_t, one of ε_t:
- `fit_binomial` (the naive idea of our research notes on the paper's Fig. 2): k̄_c(t) ~ Bin(K, p(t))
  ⇒ p(t) = mean k̄(t) / K, K_t = ceil(K·p(t)).
- `fit_gains` (ours): the expected reward gain of the k-th iteration at each step, smoothed over
  (log σ, log k) by a Gaussian process, made non-negative and non-increasing in k; K_t then follows from
  a budget by `allocate_iterations`, which spends calls where the gain per call is largest.
- `fit_final_gains` (ours): the same, from the final-reward gains of searching one step at a time
  (`probe_final_gains`), which do not credit a step with x0-prediction gains that later steps undo.
- `fit_eps`: ε(t) from which draws improved the incumbent (all global ⇒ ε → 1, all local ⇒ ε → 0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from noisesearch.adaptive.gain_probe import FinalGains
from noisesearch.errors import NoiseSearchError
from noisesearch.types import Trace


@dataclass(frozen=True)
class StepCurves:
    """One searchable step of a calibration trace: per condition (rows) and iteration (columns)."""

    step: int
    sigma: float
    incumbent: np.ndarray  # (C, K) incumbent score after each iteration
    baseline: np.ndarray  # (C,) mean candidate score of the first iteration: the score of a plain draw
    global_improved: np.ndarray  # (C, K) a global draw became the incumbent
    local_improved: np.ndarray  # (C, K) a local draw became the incumbent


def step_curves(trace: Trace) -> list[StepCurves]:
    """Reshape a calibration trace (every condition ran the same K at every searched step)."""
    curves = []
    for step in torch.unique(trace.step).tolist():
        at = trace.step == step
        conditions = torch.unique(trace.condition[at])
        K = int(trace.iteration[at].max())
        if int(at.sum()) != len(conditions) * K:
            raise NoiseSearchError("calibration traces need every condition to run the same K iterations per step")
        order = torch.argsort(trace.condition[at] * (K + 1) + trace.iteration[at])
        shape = (len(conditions), K)

        def grid(values: torch.Tensor, order: torch.Tensor = order, at: torch.Tensor = at,
                 shape: tuple[int, int] = shape) -> np.ndarray:
            return values[at][order].reshape(shape).double().numpy()

        changed, is_global = grid(trace.changed).astype(bool), grid(trace.winner_global).astype(bool)
        changed[:, 0] = False  # the first iteration replaces nothing
        baseline = grid(trace.mean_score)[:, 0]
        if np.isnan(baseline).any():
            raise NoiseSearchError("the calibration trace has no candidate mean scores; record it with this version")
        curves.append(StepCurves(step, trace.sigma[at][0].item(), grid(trace.incumbent_score), baseline,
                                 changed & is_global, changed & ~is_global))
    return curves


def fit_binomial(trace: Trace, K: int) -> list[int]:
    """K_t = ceil(K·p(t)) with p(t) = mean k̄(t) / K, the maximum-likelihood p of k̄(t) ~ Bin(K, p(t)).

    k̄ of a condition is the mean of (k − 1) over the iterations k at which a global draw became the
    incumbent (0 if none did); K_t is at least 1."""
    K_t = []
    for curve in step_curves(trace):
        ks = np.arange(curve.global_improved.shape[1])
        took = curve.global_improved
        k_bar = np.where(took.any(axis=1), (took * ks).sum(axis=1) / np.maximum(took.sum(axis=1), 1), 0.0)
        K_t.append(max(1, math.ceil(K * min(1.0, k_bar.mean() / K) - 1e-9)))
    return K_t


def fit_eps(trace: Trace, eps: float, prior: float = 1.0) -> list[float]:
    """ε(t): the share of improvements won by global draws, each kind weighted by how often it is drawn.

    With G global and L local improvements at a step under mixture weight eps, ε(t) is
    (G+a)/eps ÷ ((G+a)/eps + (L+a)/(1−eps)) with a pseudo-count a = `prior` on each: 1 when only global
    draws ever improve, 0 when only local ones do, 0.5 when both are equally good per draw. Runs that
    drew one kind only (eps 0 or 1) cannot compare them and keep their eps at every step."""
    if not 0 <= eps <= 1:
        raise NoiseSearchError(f"eps must lie in [0, 1], got {eps}")
    curves = step_curves(trace)
    if eps in (0, 1):
        return [float(eps)] * len(curves)
    fitted = []
    for curve in curves:
        g = (curve.global_improved.sum() + prior) / eps
        loc = (curve.local_improved.sum() + prior) / (1 - eps)
        fitted.append(float(g / (g + loc)))
    return fitted


def empirical_gains(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean cumulative gain over a plain draw after k iterations, its standard error, and the step sigmas:
    (S, K), (S, K), (S,)."""
    curves = step_curves(trace)
    gain = np.stack([(c.incumbent - c.baseline[:, None]).mean(axis=0) for c in curves])
    sem = np.stack([(c.incumbent - c.baseline[:, None]).std(axis=0, ddof=1) / math.sqrt(len(c.baseline))
                    if len(c.baseline) > 1 else np.zeros(c.incumbent.shape[1]) for c in curves])
    return gain, sem, np.array([c.sigma for c in curves])


def fit_gains(trace: Trace, smooth: bool = True) -> list[list[float]]:
    """Expected reward gain of each iteration k at each step (k = 1: best of N over one plain draw), from
    the x0-prediction scores of an ε-greedy run that searched every step (see `marginal_gains`)."""
    gain, sem, sigmas = empirical_gains(trace)
    return marginal_gains(gain, sem, sigmas, range(1, gain.shape[1] + 1), gain.shape[1], smooth)


def fit_final_gains(probe: FinalGains, K: int, smooth: bool = True) -> list[list[float]]:
    """Expected final-reward gain of each iteration k ≤ K at each step, searched alone (see
    `probe_final_gains` and `marginal_gains`)."""
    return marginal_gains(probe.gain, probe.sem, probe.sigmas, probe.ks, K, smooth)


def marginal_gains(gain: np.ndarray, sem: np.ndarray, sigmas: np.ndarray, ks: Sequence[int], K: int,
                   smooth: bool = True) -> list[list[float]]:
    """Gain of each iteration k = 1..K per step from mean cumulative gains gain[t, j] after ks[j] iterations.

    The cumulative gain G(σ, k) is smoothed by a Gaussian process on (log σ, log k) — an anisotropic
    Matérn kernel plus a linear (dot-product) kernel, so the level and the trend may change across noise
    levels, with each point's own standard error as its noise — and read at k = 1..K (without smoothing
    it is interpolated linearly in k from G(σ, 0) = 0), then differenced in k, clipped at 0 and made
    non-increasing in k (isotonic regression), as diminishing returns require."""
    from sklearn.isotonic import IsotonicRegression

    ks, every = np.asarray(list(ks), dtype=float), np.arange(1, K + 1, dtype=float)
    if smooth:
        cumulative = _gp_smooth(gain, sem, sigmas, ks, every)
    else:
        cumulative = np.stack([np.interp(every, np.concatenate([[0.0], ks]), np.concatenate([[0.0], row]))
                               for row in gain])
    marginal = np.diff(np.concatenate([np.zeros((len(cumulative), 1)), cumulative], axis=1), axis=1)
    fitted = []
    for row in marginal:
        decreasing = IsotonicRegression(increasing=False).fit_transform(every, row)
        fitted.append([float(max(g, 0.0)) for g in decreasing])
    return fitted


def _gp_smooth(gain: np.ndarray, sem: np.ndarray, sigmas: np.ndarray, ks: np.ndarray,
               at_ks: np.ndarray) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, Matern

    def grid(k: np.ndarray) -> np.ndarray:
        log_sigma, log_k = np.meshgrid(np.log(sigmas), np.log(k), indexing="ij")
        return np.stack([log_sigma.ravel(), log_k.ravel()], axis=1)

    scale = max(float(np.abs(gain).max()), 1e-12)
    noise = (sem.ravel() / scale) ** 2 + 1e-6
    kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * Matern([1.0, 1.0], [(1e-2, 1e2), (1e-2, 1e2)], nu=2.5)
              + ConstantKernel(0.1, (1e-4, 1e2)) * DotProduct(1.0, (1e-2, 1e2)))
    gp = GaussianProcessRegressor(kernel, alpha=noise, normalize_y=False, n_restarts_optimizer=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(grid(ks), gain.ravel() / scale)
    return gp.predict(grid(at_ks)).reshape(len(sigmas), len(at_ks)) * scale
