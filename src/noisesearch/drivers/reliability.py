"""measure_reliability(): R(σ) of several rewards on the same calibration conditions, written as
reliability.json and reliability.png, and the table the command line prints (noisesearch.adaptive.reliability)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noisesearch.adaptive.reliability import CANDIDATES, probe_reliability, reliability_plot
from noisesearch.api import make_problem
from noisesearch.errors import NoiseSearchError
from noisesearch.rewards.registry import check_point_wise, check_search_reward, check_step_reward
from noisesearch.seeds import calibration_seeds, draw_labels

DEFAULT_REWARDS = ("brightness", "compressibility", "classifier")  # the rewards of the paper's Table 1
CONFIG_KEYS = ("backend", "model", "sampler", "guidance", "labels", "seeds")  # what reliability.json keeps of a run


def measure_reliability(rewards: Sequence[str], conditions: int = 32, seed: int = 0, candidates: int = CANDIDATES,
                        **problem_args: Any) -> dict[str, dict[str, Any]]:
    """Per reward, its R(σ) curve (Reliability.to_dict()) with the NFE it cost and its run's settings, probed on
    `conditions` labels drawn from `seed` (sample seeds disjoint from every sample and bench seed);
    `problem_args` go to `make_problem`."""
    if not rewards:
        raise NoiseSearchError("no rewards given: name at least one reward")
    if conditions < 1:
        raise NoiseSearchError(f"conditions must be at least 1, got {conditions}")
    for reward in rewards:  # every name before the first probe
        check_search_reward(reward)
        check_step_reward(reward, "measuring reliability")
        check_point_wise(reward, "the reliability measurement")  # its probes score all conditions together
    labels, seeds = draw_labels(conditions, seed), calibration_seeds(seed, conditions)
    measured = {}
    for reward in rewards:
        problem, config = make_problem(reward=reward, labels=labels, seeds=seeds, **problem_args)
        check_step_reward(problem.reward, "measuring reliability")  # a remote reward declares x0_sigma only now
        curve = probe_reliability(problem, candidates)
        measured[reward] = {**curve.to_dict(), "nfe": int(problem.nfe.sum()),
                            "config": {k: config[k] for k in CONFIG_KEYS}}
    return measured


def write_reliability(measured: dict[str, dict[str, Any]], out: Path, command: str) -> tuple[Path, Path]:
    """out/reliability.json (the measurements and the command that made them) and out/reliability.png."""
    out.mkdir(parents=True, exist_ok=True)
    data, figure = out / "reliability.json", out / "reliability.png"
    data.write_text(json.dumps({"command": command, "rewards": measured}, indent=1) + "\n")
    reliability_plot({r: m["steps"] for r, m in measured.items()}, figure)
    return data, figure


def reliability_table(measured: dict[str, dict[str, Any]]) -> str:
    """R with its interval per step (rows) and reward (columns)."""
    rewards = list(measured)
    rows = ["sigma_hat  " + "  ".join(f"{r:>24}" for r in rewards)]
    steps = [measured[r]["steps"] for r in rewards]
    for t, step in enumerate(steps[0]):
        cells = [summary[t] for summary in steps]
        rows.append(f"{step['sigma']:9.3g}  " + "  ".join(f"{c['R']:6.3f} [{c['lo']:6.3f}, {c['hi']:6.3f}]"
                                                          for c in cells))
    return "\n".join(rows)
