"""Nested best-of-N: candidate streams of their own, and bench cells computed from one pool of trajectories
equal, bit for bit, the same cells run alone."""

from __future__ import annotations

import json

import torch
from conftest import make_problem, tiny_denoiser

from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.presets import Preset
from noisesearch.experiments.store import read_results
from noisesearch.rng import CandidateGenerators
from noisesearch.search import get_algorithm


def test_candidate_streams_do_not_depend_on_how_many_candidates_are_drawn():
    many, few = CandidateGenerators([3, 4], 5), CandidateGenerators([3, 4], 2)
    drawn = many.randn(5, 2, 3)
    assert drawn.shape == (2, 5, 2, 3)
    assert torch.equal(few.randn(2, 2, 3), drawn[:, :2])
    assert torch.equal(few.randn(1, 4, which=[1]), many.randn(1, 4, which=[1]))  # and later draws alike
    assert not torch.equal(drawn[0, 0], drawn[1, 0]) and not torch.equal(drawn[0, 0], drawn[0, 1])


def test_nested_best_of_n_keeps_the_best_of_its_first_candidates(denoiser):
    def problem():
        return make_problem(denoiser, [1, 2, 3, 4], [7, 8, 9, 10])

    small = get_algorithm("best_of_n", N=2, nested=True).run(problem())
    large = get_algorithm("best_of_n", N=6, nested=True).run(problem())
    assert bool((large.rewards >= small.rewards).all()) and bool((large.rewards > small.rewards).any())
    plain = get_algorithm("best_of_n", N=2).run(problem())
    assert not torch.equal(plain.images, small.images)  # the default draws as it always did


def preset(runs: list[dict], columns: tuple[str, ...] = ("brightness", "fid_oracle", "ssl_mnist")) -> Preset:
    return Preset.from_dict("pool", {"labels": 3, "steps": 4, "runs": runs,
                                     "rewards": [{"name": c, "reward": c} for c in columns]})


def records_by_cell(results) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for r in read_results(results):
        found.setdefault(r["cell"], []).append(r)
    return found


def kept(records: list[dict]) -> list[dict]:
    """Records without what differs between a pooled cell and the cell run alone (timing, the pool)."""
    return [{k: v for k, v in r.items() if k not in ("wall_time_s", "cell_wall_time_s", "pool")} for r in records]


def pooled_and_alone(tmp_path, runs: list[dict], columns: tuple[str, ...]) -> tuple[dict, dict]:
    """The records of `runs` × `columns` benched together, and of each cell benched alone."""
    pooled = records_by_cell(run_bench(preset(runs, columns), tmp_path / "pool", progress=False,
                                       model_loader=tiny_denoiser))
    alone = {}
    for k, run in enumerate(runs):
        for column in columns:
            alone.update(records_by_cell(run_bench(preset([run], (column,)), tmp_path / f"{column}{k}",
                                                   progress=False, model_loader=tiny_denoiser)))
    assert sorted(pooled) == sorted(alone) and len(pooled) == len(runs) * len(columns)
    for key, records in pooled.items():
        assert kept(records) == kept(alone[key])
    return pooled, alone


def test_cells_from_one_pool_equal_the_cells_run_alone(tmp_path):
    runs = [{"algorithm": "best_of_n", "params": {"N": n, "nested": True}} for n in (1, 3, 4)]
    pooled, _ = pooled_and_alone(tmp_path, runs, ("brightness", "fid_oracle", "ssl_mnist"))
    for key, records in pooled.items():
        n = json.loads(key)["params"]["N"]
        assert all(r["pool"] == {"N": 4, "cell": "best_of_n_N4_nestedTrue__brightness__r0"} for r in records)
        assert [r["nfe"] for r in records] == [7 * n] * 3  # best-of-n's NFE (Heun, 4 steps: 7 per trajectory)
    log = [json.loads(line) for line in (tmp_path / "pool" / "cells.jsonl").read_text().splitlines()]
    assert len(log) == 9 and all(entry["status"] == "done" for entry in log)


def test_an_anytime_search_gives_its_smaller_budgets_from_one_run(tmp_path):
    runs = [{"algorithm": "zero_order_initial", "params": {"N": 2, "K": k}} for k in (1, 3, 2)]
    pooled, _ = pooled_and_alone(tmp_path, runs, ("brightness", "fid_oracle"))  # set-level: its cells run alone
    for key, records in pooled.items():
        k, column = json.loads(key)["params"]["K"], json.loads(key)["column"]
        assert [r["nfe"] for r in records] == [2 * 7 * k] * 3  # the meter's, after k rounds of 2 trajectories
        pool = {"K": 3, "cell": "zero_order_initial_N2_K3__brightness__r0"}
        assert all(r.get("pool") == (None if column == "fid_oracle" else pool) for r in records)
