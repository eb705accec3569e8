"""MCTS's rounds of simulations (`parallel`): larger calls, the same NFE per simulation, still a search."""

import pytest
import torch
from test_search_toy import GaussianDenoiser, toy_problem

from noisesearch import NoiseSearchError, get_algorithm
from noisesearch.testing import CallRecorder


def mean_rows(parallel: int) -> float:
    problem = toy_problem(1)
    problem.denoiser = recorder = CallRecorder(GaussianDenoiser())
    get_algorithm("mcts", N=4, S=8, parallel=parallel).run(problem)
    return sum(recorder.rows) / len(recorder.rows)


def test_rounds_of_simulations_make_larger_calls_for_one_image():
    assert mean_rows(4) > 2 * mean_rows(1)


def test_parallel_mcts_still_beats_naive_on_the_toy():
    naive = get_algorithm("naive").run(toy_problem()).rewards.mean().item()
    searched = get_algorithm("mcts", N=4, S=4, parallel=4).run(toy_problem()).rewards.mean().item()
    assert searched > naive + 0.03, (naive, searched)


def test_parallel_one_is_the_sequential_search_and_parallel_changes_the_tree():
    one = get_algorithm("mcts", N=3, S=4).run(toy_problem(4))
    also_one = get_algorithm("mcts", N=3, S=4, parallel=1).run(toy_problem(4))
    many = get_algorithm("mcts", N=3, S=4, parallel=4).run(toy_problem(4))
    assert torch.equal(one.images, also_one.images)
    assert not torch.equal(one.images, many.images)


def test_parallel_must_be_a_positive_integer():
    with pytest.raises(NoiseSearchError, match="parallel must be an integer of at least 1"):
        get_algorithm("mcts", parallel=0)
