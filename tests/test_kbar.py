"""k̄(σ), the paper's Fig. 2, in both definitions, on traces with a known answer; and its bootstrap interval."""

import numpy as np
import pytest
import torch

from noisesearch.search.tracing import bootstrap_interval, kbar_per_condition, step_statistics
from noisesearch.types import Trace


def trace_of(took: list[list[bool]], sigma: float = 2.0) -> Trace:
    """One step; condition c's iterations k = 1..K took a global draw where took[c][k - 1]."""
    rows = [(c, k + 1, t) for c, flags in enumerate(took) for k, t in enumerate(flags)]
    n = len(rows)
    return Trace(condition=torch.tensor([c for c, _, _ in rows]), step=torch.zeros(n, dtype=torch.long),
                 sigma=torch.full((n,), sigma), iteration=torch.tensor([k for _, k, _ in rows]),
                 winner_score=torch.zeros(n), incumbent_score=torch.zeros(n),
                 winner_global=torch.tensor([t for _, _, t in rows]), changed=torch.ones(n, dtype=torch.bool),
                 mean_score=torch.zeros(n))


def test_both_definitions_on_a_known_pattern():
    trace = trace_of([[True, False, True, False], [False] * 4])
    [(step, sigma, wins)] = kbar_per_condition(trace, "wins")
    [(_, _, paper)] = kbar_per_condition(trace, "paper")
    assert (step, sigma) == (0, 2.0)
    assert wins[0] == 1.0 and np.isnan(wins[1])  # mean of k - 1 over k = 1, 3; no global win at all
    assert paper.tolist() == [pytest.approx(2 / 3), 0.0]  # (0 + 2) / (K - 1)
    stats = step_statistics(trace)[0]
    assert stats["k_bar"] == 1.0 and stats["k_bar_paper"] == pytest.approx(1 / 3)
    assert stats["global_win_rate"] == 0.25


def test_a_global_win_at_every_iteration_gives_the_papers_ten_at_k_20():
    trace = trace_of([[True] * 20])
    assert kbar_per_condition(trace, "paper")[0][2].tolist() == [10.0]
    assert kbar_per_condition(trace, "wins")[0][2].tolist() == [9.5]


def test_an_untaken_global_winner_is_not_a_global_iteration():
    trace = trace_of([[True, True]])
    elitist = Trace(**{**trace.__dict__, "changed": torch.tensor([True, False])})
    assert kbar_per_condition(elitist, "paper")[0][2].tolist() == [0.0]
    assert kbar_per_condition(trace, "paper")[0][2].tolist() == [1.0]


def test_unknown_definition_is_an_error():
    with pytest.raises(ValueError, match="unknown k̄ definition 'median'"):
        kbar_per_condition(trace_of([[True]]), "median")


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_conditions():
    rng = np.random.default_rng(1)
    few, many = rng.normal(3.0, 1.0, 10), rng.normal(3.0, 1.0, 1000)
    for values in (few, many):
        mean, lo, hi = bootstrap_interval(values)
        assert lo < mean < hi and mean == pytest.approx(values.mean())
    assert np.ptp(bootstrap_interval(many)[1:]) < np.ptp(bootstrap_interval(few)[1:]) / 4
    assert bootstrap_interval(np.array([2.0, np.nan, 2.0])) == (2.0, 2.0, 2.0)
    assert all(np.isnan(bootstrap_interval(np.array([np.nan]))))
