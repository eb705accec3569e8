"""Cells computed together from one run: nested random search from one pool of trajectories, and anytime searches
from one run of their largest budget.

Nested random search: the cells of `best_of_n` runs with nested=True that share everything but N and their reward
column are computed together, their trajectories once.

With nested=True candidate j of a label draws its noise from its own stream (rng.CandidateGenerators), so the
first n of the N_max trajectories of a label are exactly best-of-n's candidates, in any reward column (the
trajectories do not depend on the reward). A pool task runs N_max trajectories per label once, then for each
cell scores the first N of them with the cell's reward as best_of_n would (point-wise: all labels together;
set-level: label by label in order, each choice committed to the reward's set before the next) and keeps the
best. Every call is padded to max_batch rows (batch-invariant mode), so each cell's records are bit for bit those
of running the cell alone (tests/test_pools.py checks it); the pool spends N_max/N_cell times the NFE of a cell
once, instead of the sum over cells (Ma et al.'s random-search curves for four verifiers at N = 2..32: 32
trajectories per label instead of 248).

Anytime searches (a SearchAlgorithm whose `anytime` names a parameter, e.g. zero_order_initial's K): the cells of
runs that differ only in that parameter, in one point-wise reward column, come from one run of its largest value,
each taken after its own number of rounds; their NFE is the meter's at that round, and their records equal those of
the cells run alone (the rounds' draws do not depend on the parameter).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.cells import Cell, CellOutput, CellTask, cell_output, cell_problem, compute_cell
from noisesearch.problem import Problem
from noisesearch.progress import ProgressCallback
from noisesearch.rewards.registry import is_set_level
from noisesearch.rng import CandidateGenerators
from noisesearch.search import algorithm_class, get_algorithm
from noisesearch.search.base import run_trajectories, select_best
from noisesearch.types import SearchResult


def pooled(cell: Cell) -> bool:
    """Whether a cell can come from a pool: best_of_n with nested=True."""
    return cell.run.algorithm == "best_of_n" and cell.run.params.get("nested") is True


def grown(cell: Cell) -> str | None:
    """The parameter in which a cell's search is anytime, where its cells can come from one run: a point-wise reward
    column and the parameter given in the run."""
    name = algorithm_class(cell.run.algorithm).anytime
    if name is None or name not in cell.run.params or is_set_level(cell.column.reward):
        return None
    return name


def pool_groups(todo: Sequence[tuple[Cell, list[int]]]) -> list[list[tuple[Cell, list[int]]]]:
    """The cells to compute, grouped, the largest first: nested best_of_n cells that share a pool (same parameters
    but N, steps, repeat, guidance and missing labels; any column), and anytime searches' cells that differ only in
    their anytime parameter (same column besides); every other cell alone."""
    groups: dict[str, list[tuple[Cell, list[int]]]] = defaultdict(list)
    alone = []
    for cell, missing in todo:
        name = "N" if pooled(cell) else grown(cell)
        if name is None:
            alone.append([(cell, missing)])
            continue
        shared = {k: v for k, v in cell.run.params.items() if k != name}
        column = None if pooled(cell) else cell.column.name
        key = json.dumps([cell.run.algorithm, shared, column, cell.run.steps, cell.repeat, cell.column.guidance,
                          missing], sort_keys=True)
        groups[key].append((cell, missing))
    together = [sorted(group, key=lambda item: -size_of(item[0])) for group in groups.values()]
    return [*together, *alone]


def size_of(cell: Cell) -> int:
    """The value of the parameter a cell's group grows in."""
    return cell.run.params["N" if pooled(cell) else grown(cell)]


def compute_task(task: CellTask, callback: ProgressCallback | None = None) -> CellOutput | tuple[CellOutput, ...]:
    """A task's output: its cell's, or the outputs of its pooled cells in order."""
    if not task.pooled:
        return compute_cell(task, callback)
    return compute_pool(task, callback) if pooled(task.cell) else compute_rounds(task, callback)


def compute_rounds(task: CellTask, callback: ProgressCallback | None = None) -> tuple[CellOutput, ...]:
    """The outputs of an anytime search's cells (task.cell has the largest value) from one run of task.cell,
    each taken after its own number of rounds."""
    main = task.cell
    name = grown(main)
    problem = cell_problem(task, main, callback)
    algorithm = get_algorithm(main.run.algorithm, **main.run.algorithm_params(task.schedules, main.column.name))
    algorithm.check_reward(problem.reward)
    wanted = {cell.run.params[name]: cell for cell in task.cells}
    taken: dict[int, CellOutput] = {}
    start = time.perf_counter()
    problem.start_progress(cost.nfe(algorithm.nfe_estimate(problem.sampler), problem.denoiser), algorithm.name)
    try:
        for value, (states, rewards) in enumerate(algorithm.rounds(problem), start=1):
            if value in wanted:
                cell = wanted[value]
                result = SearchResult(images=problem.to_images(states[:, None])[:, 0], rewards=rewards.clone(),
                                      nfe=problem.nfe.clone(), wall_time=time.perf_counter() - start,
                                      config={"algorithm": main.run.algorithm, "params": dict(cell.run.params)})
                taken[value] = cell_output(task, cell, problem.cond, result,
                                           {"pool": {name: main.run.params[name], "cell": main.slug}})
    finally:
        problem.close_progress()
    return tuple(taken[cell.run.params[name]] for cell in task.cells)


def compute_pool(task: CellTask, callback: ProgressCallback | None = None) -> tuple[CellOutput, ...]:
    """The outputs of task.cells (task.cell has the largest N) from one pool of trajectories; the pool's calls
    report to `callback`."""
    size = task.cell.run.params["N"]
    denoiser = task.model.load()
    columns = {cell.column.name: cell for cell in task.cells}  # one scoring Problem per column, for all its N
    problems = {name: cell_problem(task, cell) for name, cell in columns.items()}
    steps = {p.x0_step for p in problems.values()} - {None}
    if len(steps) > 1:
        raise NoiseSearchError(f"the reward columns of pool {task.cell.slug} need x0 predictions at different steps "
                               f"({sorted(steps)}): put them in runs of their own")
    runner = cell_problem(task, next((c for c in task.cells if problems[c.column.name].x0_step is not None),
                                     task.cell), callback)
    start = time.perf_counter()
    gens = CandidateGenerators(runner.seeds, size)
    x, x0 = run_trajectories(runner, gens, runner.initial_state(gens.randn(size, *runner.image_shape)))
    pool_s = time.perf_counter() - start
    expected = cost.nfe(get_algorithm("best_of_n", N=size).nfe_formula(runner.sampler), denoiser)
    if not bool((runner.nfe == expected).all()):  # the meter, not the formula, is the truth: they must agree
        raise NoiseSearchError(f"pool {task.cell.slug} spent {runner.nfe.tolist()} NFE per label, not {expected}")
    outputs = []
    for cell in task.cells:
        n = cell.run.params["N"]
        problem = problems[cell.column.name]
        began = time.perf_counter()
        images, rewards = best_of_first(problem, x[:, :n], None if x0 is None or problem.x0_step is None
                                        else x0[:, :n])
        per_label = cost.nfe(get_algorithm("best_of_n", N=n).nfe_formula(problem.sampler), denoiser)
        result = SearchResult(images=images, rewards=rewards, nfe=torch.full((len(images),), per_label),
                              wall_time=pool_s * n / size + time.perf_counter() - began,
                              config={"algorithm": "best_of_n", "params": dict(cell.run.params)})
        outputs.append(cell_output(task, cell, problem.cond, result, {"pool": {"N": size, "cell": task.cell.slug}}))
    return tuple(outputs)


def best_of_first(problem: Problem, x: torch.Tensor, x0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each label's best image of the candidates x (C, n, ...) and its reward, chosen as best_of_n chooses: a
    set-level reward label by label in order, each choice committed before the next label is scored."""
    if not problem.set_level:
        states, rewards = select_best(x, problem.score(x, x0=x0))
        return problem.to_images(states[:, None])[:, 0], rewards
    problem.reset_set()
    images, rewards = [], []
    for c in range(problem.n):
        with problem.part([c]) as sub:
            states, reward = select_best(x[c:c + 1], sub.score(x[c:c + 1], x0=None if x0 is None else x0[c:c + 1]))
            image = sub.to_images(states[:, None])[:, 0]
        problem.commit(image, [c])
        images.append(image)
        rewards.append(reward)
    return torch.cat(images), torch.cat(rewards)
