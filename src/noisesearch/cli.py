"""The `noisesearch` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import math
import os
import shlex
import signal
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from noisesearch.api import make_problem, search
from noisesearch.backends import backend_names, get_backend
from noisesearch.batching import DEFAULT_MAX_BATCH, parse_max_batch
from noisesearch.drivers import calibrate, search_online
from noisesearch.drivers.generate import run_generate
from noisesearch.drivers.reliability import DEFAULT_REWARDS as RELIABILITY_REWARDS
from noisesearch.drivers.reliability import measure_reliability
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import DEFAULT_RETRIES
from noisesearch.experiments.bench import run_bench
from noisesearch.files import check_writable, check_writable_folder
from noisesearch.metrics import METRICS
from noisesearch.metrics.features import describe_extractor, extractor_names
from noisesearch.metrics.population import describe_metrics
from noisesearch.naming import warn_renamed
from noisesearch.rewards import describe_reward, reward_names
from noisesearch.rewards.registry import reward_kinds
from noisesearch.sampling import describe_sampler, sampler_names
from noisesearch.search import algorithm_class, algorithm_names, algorithm_params, canonical_params
from noisesearch.serving.config import DEFAULT_HOST, DEFAULT_PORT, Limits

if TYPE_CHECKING:
    from noisesearch.api import PlannedSearch
    from noisesearch.executors import Executor
    from noisesearch.types import SearchResult

def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The defaults of a library function's keyword arguments: the CLI's defaults are the library's."""
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


PROBLEM = keyword_defaults(make_problem)
SEARCH = keyword_defaults(search)
ONLINE = keyword_defaults(search_online)
BENCH = keyword_defaults(run_bench)
GENERATE = keyword_defaults(run_generate)
CALIBRATE = keyword_defaults(calibrate)
RELIABILITY = keyword_defaults(measure_reliability)
LIMITS = Limits()

ESTIMATE_MIN_NFE = 1000  # runs of fewer NFE in all are not timed (a timed call costs two network calls)
SHOW_ESTIMATE_S = 30  # runs expected to take longer print their estimate first
CONFIRM_ESTIMATE_S = 3600  # and longer ones than this need --yes


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line instead of usage + traceback-like text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parse_labels(text: str) -> list[int]:
    try:
        labels = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"labels must be comma-separated digits such as 3,5,7, got '{text}'") from None
    if not labels:
        raise argparse.ArgumentTypeError("give at least one label, such as --labels 3,5,7")
    return labels


def parse_out(text: str) -> Path:
    """An output path; the empty string (which would mean the current directory) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty: give a directory or file name")
    return Path(text)


def max_batch_type(fixed_for: str | None = None) -> Callable[[str], int | str]:
    """--max-batch's argparse type: noisesearch.batching.parse_max_batch, its error as a one-line usage error."""
    def parse(text: str) -> int | str:
        try:
            return parse_max_batch(text, fixed_for)
        except NoiseSearchError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def key_values(items: list[str], flag: str) -> dict[str, str]:
    """The KEY=VALUE strings of a repeated flag as a dict; a one-line error for one without "=" or a key."""
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NoiseSearchError(f"{flag} takes KEY=VALUE, got '{item}'")
        found[key] = value
    return found


def parse_names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give comma-separated names, such as naive,best_of_n")
    return names


class RenamedFlag(argparse.Action):
    """An old spelling of a flag: stores its value as the new spelling does, with a RenamedWarning once per
    process (until the next release)."""

    def __init__(self, option_strings: list[str], dest: str, renamed_to: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.renamed_to = renamed_to

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warn_renamed(str(option_string), self.renamed_to, parser.prog)
        setattr(namespace, self.dest, values)


def algorithm_flags() -> dict[str, Callable[[str], object]]:
    """Every parameter of every registered algorithm, with its parser, as one flag each; also the old names of
    renamed parameters (their algorithm's `renamed`) that no algorithm takes any more, which get_algorithm maps
    to the new ones."""
    flags: dict[str, Callable[[str], object]] = {}
    old: dict[str, Callable[[str], object]] = {}
    for name in algorithm_names():
        cls = algorithm_class(name)
        parsers = {f.name: flag_parser(f.type if isinstance(f.type, str) else f.type.__name__)
                   for f in dataclasses.fields(cls) if f.init}
        flags |= parsers
        old |= {before: parsers[after] for before, after in cls.renamed.items()}
    return flags | {k: v for k, v in old.items() if k not in flags}


def algorithm_flag_names(param: str) -> list[str]:
    """The flags of an algorithm parameter, the one to show last: --lambda for lambda_ (whose trailing _ only
    avoids Python's keyword), else --NAME and, for a name with an inner _, --NA-ME too."""
    if param.endswith("_"):
        return [f"--{param.rstrip('_')}"]
    return [f"--{param}"] + ([f"--{param.replace('_', '-')}"] if "_" in param else [])


def flag_parser(annotation: str) -> Callable[[str], object]:
    """The parser of an algorithm parameter from its type annotation ("int | None" parses ints)."""
    kinds = [part.strip() for part in annotation.split("|")]
    for kind, parser in (("tuple[Move, ...]", parse_moves), ("tuple[int, ...]", parse_beams),
                         ("tuple[str, ...]", parse_names)):
        if kind in kinds:
            return parser
    for kind, parser in (("bool", parse_bool), ("int", int), ("float", float)):
        if kind in kinds:
            return parser
    return str


def add_model_flags(parser: argparse.ArgumentParser, steps_help: str = "sampler steps") -> None:
    """--backend, --model, --sampler and --steps, shared by sample, bench and calibrate."""
    parser.add_argument("--backend", default=PROBLEM["backend"],
                        help=f"registered backend: {', '.join(backend_names())} (see `noisesearch list`)")
    parser.add_argument("--model", help="the backend's model: diffusers a local pipeline directory, edm a network "
                                        ".pkl or torch file, embedded a weights directory (default: the packaged one)")
    parser.add_argument("--sampler", default=None,
                        help=f"registered sampler: {', '.join(sampler_names())} (default: the backend's, heun)")
    parser.add_argument("--steps", type=int, default=PROBLEM["steps"], help=steps_help)
    parser.add_argument("--trust-model-code", action="store_true",
                        help="allow a --model file that needs code to load (a pickle or a full torch module): "
                             "loading it can run arbitrary code, so only for files you trust")


def add_executor_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """--executor and its options, shared by bench, calibrate and generate."""
    parser.add_argument("--executor", default="serial", choices=("serial", "process", "ray"),
                        help=f"where {what} run: serial (this process, the default), process (a local pool of "
                             "--workers processes) or ray (a Ray cluster, see --ray-address)")
    parser.add_argument("--workers", type=int, default=None,
                        help="process executor: worker processes (default: one per core)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="ray executor: the cluster to join, e.g. HEAD_IP:6379 or auto (default: a cluster "
                             "started on this machine, else a new local Ray instance)")
    parser.add_argument("--cpus-per-cell", type=float, default=None,
                        help="CPUs (torch threads) per task (default: process the workers' share of the cores, "
                             "ray 1)")
    parser.add_argument("--gpus-per-cell", type=float, default=None,
                        help="ray executor: GPUs per task, fractions allowed (default 0)")
    parser.add_argument("--retries", type=int, default=None,
                        help="process and ray executors: further attempts of a task whose worker died (killed, out "
                             f"of memory, node lost; default {DEFAULT_RETRIES})")


def check_gpus_used(args: argparse.Namespace, what: str) -> None:
    """A one-line error for Ray GPUs reserved for tasks that run on the CPU."""
    if args.executor == "ray" and args.gpus_per_cell and args.device == "cpu":
        raise NoiseSearchError(f"--gpus-per-cell reserves GPUs that {what} on the CPU would not use: add --device "
                               "cuda")


def executor_of(args: argparse.Namespace) -> Executor:
    """The executor that --executor and its options name (Ray is imported only for --executor ray)."""
    from noisesearch.executors import make_executor

    return make_executor(args.executor, workers=args.workers, ray_address=args.ray_address,
                         cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell, retries=args.retries)


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of one search, shared by sample and generate: algorithm and its parameters, reward, evaluator,
    model, seed, batching, budget, device and dtype."""
    parser.add_argument("--algorithm", default=SEARCH["algorithm"],
                        help="registered algorithm (see `noisesearch list`; default %(default)s)")
    parser.add_argument("--reward", default=SEARCH["reward"], help="reward used during search")
    add_model_flags(parser)
    parser.add_argument("--reward-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a reward constructor argument, e.g. model=/path/to/clip (repeatable)")
    parser.add_argument("--device", default=PROBLEM["device"], help="cpu, cuda or mps")
    parser.add_argument("--dtype", default=PROBLEM["dtype"],
                        help="float32, float16 or bfloat16 (diffusers backend); the embedded model takes float32 or "
                             "bfloat16 (autocast: faster on CPUs with bf16 units, x0 within ~3e-2 of float32's)")
    parser.add_argument("--seed", type=int, default=PROBLEM["seed"], help="sample i uses seed + i")
    parser.add_argument("--guidance", type=float, default=None,
                        help="w in D_null + w(D_cond - D_null): 1 conditional (embedded default), 0 unconditional, "
                             "other values classifier-free guidance at 2 NFE per call (diffusers default 7.5)")
    parser.add_argument("--max-batch", type=max_batch_type(), default=DEFAULT_MAX_BATCH,
                        help="most rows per network call (default 16), or auto: sized from the free CUDA memory "
                             "(16 on CPU); calls carry real rows only, unless --batch-invariant")
    parser.add_argument("--nfe-budget", type=int, default=None,
                        help="hard cap on the NFE per image: a call that would pass it stops the run (a search's "
                             "own plan is --target-nfe where it takes one)")
    parser.add_argument("--budget", type=int, dest="nfe_budget", action=RenamedFlag, renamed_to="--nfe-budget")
    parser.add_argument("--evaluator", default=SEARCH["evaluator"],
                        help="held-out reward for final scoring: auto (MNIST evaluator on the embedded model), none, "
                             "or a reward name")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    taken = {param for name in algorithm_names() for param in algorithm_params(name)}
    for flag, kind in algorithm_flags().items():
        names = algorithm_flag_names(flag)
        parser.add_argument(*names, dest=flag, type=kind, default=None,
                            help=f"algorithm parameter {flag}" if flag in taken else argparse.SUPPRESS)
        if names[0] != f"--{flag}":
            parser.add_argument(f"--{flag}", dest=flag, type=kind, action=RenamedFlag, renamed_to=names[0])


def add_generate_parser(sub: argparse._SubParsersAction) -> None:
    generate = sub.add_parser("generate", help="search every condition of a file into a resumable data set (Parquet "
                                               "shards that Hugging Face datasets loads)")
    generate.add_argument("--conditions", type=Path, required=True, metavar="FILE",
                          help="labels (label backends) or prompts, one per line; or a .jsonl file of objects with "
                               "\"label\" or \"prompt\", an optional \"seed\" and metadata (any other keys)")
    generate.add_argument("--out", type=parse_out, required=True,
                          help="the data set's directory; rerunning the same command resumes it")
    add_search_flags(generate)
    generate.add_argument("--shard-size", type=int, default=GENERATE["shard_size"],
                          help="conditions per shard: searched as one batch, written as one file (default "
                               "%(default)s)")
    generate.add_argument("--keep-candidates", action="store_true",
                          help="also store each condition's last compared candidates with their scores, and the best "
                               "and worst as a preference pair (chosen, rejected)")
    add_executor_flags(generate, "shards")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="noisesearch", description="Search a diffusion sampler's noise against a reward.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    sample = sub.add_parser("sample", help="search one image per label and write PNGs and result.json")
    add_search_flags(sample)
    sample.add_argument("--labels", type=parse_labels, default=[0], help="comma-separated digits, e.g. 3,5,7")
    sample.add_argument("--prompt", action="append", help="a prompt (diffusers backend; repeat for several)")
    sample.add_argument("--prompts-file", type=Path, help="a file with one prompt per line (diffusers backend)")
    sample.add_argument("--compile", action="store_true",
                        help="run the network through torch.compile (embedded backends): up to 1.5x faster per call at "
                             "16-64 rows after ~20 s of compilation per call shape (2 CPU cores), so for long runs, "
                             "not one image; x0 within ~1e-5 of the eager path's, not bit-identical")
    sample.add_argument("--out", type=parse_out, required=True, help="output directory")
    sample.add_argument("--batch-invariant", action="store_true",
                        help="pad every call to exactly --max-batch rows, so that each image is bit-identical "
                             "whatever else shares the batch (what bench does); slower for few images")
    sample.add_argument("--trace", action="store_true",
                        help="write the search's trace to DIR/trace.npz, with every candidate's score and each "
                             "searched step's x0 prediction (per-step searches; no extra NFE), for `noisesearch "
                             "explore DIR`")
    sample.add_argument("--metrics", default=None, metavar="fid,kid,is,pr",
                        help="population metrics of the images, printed and written to result.json: any of "
                             f"{','.join(METRICS)} (each needs enough labels or prompts: see docs/metrics.md)")
    sample.add_argument("--metrics-features", default=None, metavar="NAME",
                        help="feature extractor of --metrics: mnist (the default on the embedded backends: "
                             "MNIST-FID) or inception (with --metrics-features-arg path=FILE)")
    sample.add_argument("--metrics-features-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a constructor argument of the extractor, e.g. path=inception-2015-12-05.pkl "
                             "(repeat for several)")
    sample.add_argument("--reference", default=None, metavar="NAME|PATH",
                        help="reference features of --metrics: a packaged name or a .safetensors file (default: "
                             "the extractor's, mnist_t10k for mnist)")
    sample.add_argument("--online", type=Path, default=None, metavar="STATE",
                        help="adaptive_eps_greedy with --target-nfe: learn the search schedule from these searches "
                             "(no calibration), STATE a JSON file created if missing and updated after every batch; "
                             "the prior is --search-schedule, else the shipped schedule, else a uniform one")
    sample.add_argument("--online-batch", type=int, default=None,
                        help="with --online: conditions per batch, the learner re-plans between batches "
                             f"(default {ONLINE['batch']})")
    sample.add_argument("--overwrite", action="store_true",
                        help="run into a non-empty --out: replace the earlier run's result.json, grid.png, "
                             "schedule.json and images there (and nothing else)")
    sample.add_argument("--yes", action="store_true",
                        help=f"start a run estimated to take over {CONFIRM_ESTIMATE_S // 60} min (longer runs "
                             "are refused without it; runs over half a minute print their estimate first)")
    add_generate_parser(sub)
    sub.add_parser("list", help="show registered algorithms, rewards, backends and samplers")
    bench = sub.add_parser("bench", help="run a preset grid of searches into a resumable run directory")
    bench.add_argument("--preset", default="table1", help="built-in preset name or a .json file (see --list)")
    bench.add_argument("--out", type=parse_out, help="run directory; rerunning the same command resumes it")
    bench.add_argument("--list", action="store_true", help="show the built-in presets and exit")
    bench.add_argument("--algorithms", type=parse_names, help="only these algorithms of the preset, e.g. naive,beam")
    bench.add_argument("--rewards", type=parse_names, help="only these reward columns of the preset")
    bench.add_argument("--labels", type=int, help="number of labels drawn from --seed (default: the preset's)")
    bench.add_argument("--repeats", type=int, help="seeds per label (default: the preset's)")
    bench.add_argument("--seed", type=int, help="draws the labels and the sample seeds (default: the preset's, 0 "
                                                "unless it names another)")
    bench.add_argument("--calibration", type=parse_field, action="append", default=[], metavar="FIELD=JSON",
                       help="change a field of the preset's calibration, e.g. conditions=5 or beams=[1] "
                            "(repeatable; fields as in the preset JSON)")
    bench.add_argument("--max-batch", type=max_batch_type("bench"), default=DEFAULT_MAX_BATCH,
                       help="rows per network call: bench pads every call to exactly this many (batch-invariant "
                            "mode), so that records are exact whatever a cell's labels and --reuse can copy them")
    bench.add_argument("--backend", default=None,
                       help=f"registered label backend: {', '.join(backend_names())} (default: the preset's, "
                            "embedded unless it names another)")
    bench.add_argument("--model", help="the backend's model path (as for sample)")
    bench.add_argument("--device", default=BENCH["device"],
                       help="where the network runs: cpu (default), cuda (with --gpus-per-cell on Ray) or mps; "
                            "rewards run on the CPU")
    bench.add_argument("--dtype", default=BENCH["dtype"],
                        help="the network's dtype, as for sample (cells of another dtype are other cells: their keys "
                             "name it)")
    bench.add_argument("--sampler", default=None,
                       help=f"registered sampler: {', '.join(sampler_names())} (default: the backend's)")
    bench.add_argument("--trust-model-code", action="store_true",
                       help="allow a --model file that needs code to load (as for sample)")
    bench.add_argument("--reuse", type=Path, action="append", default=[], metavar="RUN_DIR",
                       help="copy finished identical cells (same labels, seeds, steps) from another run directory "
                            "instead of rerunning them (repeatable)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_executor_flags(bench, "cells")
    cal = sub.add_parser("calibrate", help="fit a per-step search schedule (K_t, eps_t) from eps-greedy runs")
    cal.add_argument("--reward", default=CALIBRATE["reward"], help="reward to calibrate for")
    cal.add_argument("--out", type=parse_out, required=True, help="schedule JSON to write")
    cal.add_argument("--method", default=None, help="final (gains in the final reward of searching one step "
                                                       "alone, the default), gain (GP-smoothed marginal gains of "
                                                       "x0-prediction scores), binomial (K_t = "
                                                       "ceil(K p(t))) or reliability (gains and eps_t from "
                                                       "R(sigma): exploit where the early reward predicts the "
                                                       "final one)")
    cal.add_argument("--conditions", type=int, default=None,
                     help="calibration conditions (labels drawn from --seed; default 16)")
    cal.add_argument("--seed", type=int, default=None,
                     help="draws the calibration labels (default 0); their sample seeds are disjoint from every "
                          "sample and bench seed")
    cal.add_argument("--N", type=int, default=None, help="candidates per iteration of the calibration runs (default 4)")
    cal.add_argument("--K", type=int, default=None, help="iterations per step of the calibration runs (default 20)")
    cal.add_argument("--eps", type=float, default=None,
                     help="global-draw probability of the calibration runs (default: 1 with --method final, else 0.4)")
    cal.add_argument("--lambda", dest="lambda_", type=float, default=None,
                     help="local-draw radius of the calibration runs (default 0.15); adaptive_eps_greedy then uses "
                          "it too")
    cal.add_argument("--moves", type=parse_moves, default=None,
                     help="further moves to calibrate, 'N,eps,lambda' separated by ';', or none; the one validated "
                          "best at the budget is kept (default: 1,0.15,0.45 with --method final, else none)")
    cal.add_argument("--beams", type=parse_beams, default=None,
                     help="numbers B of incumbents to validate, e.g. '1,2,4' (default: 1,2,4 with --method final, "
                          "else 1)")
    cal.add_argument("--validation-conditions", type=int, default=None,
                     help="conditions that validate moves and beams (default: 64 with --method final, else "
                          "--conditions); 0 keeps the move of the largest expected gain without validation runs "
                          "(with --beams 1)")
    cal.add_argument("--target-nfe", type=int, default=None,
                     help="final and gain methods: calls per image the schedule's K_t spend (default: a third of "
                          "ε-greedy (N, K)'s)")
    cal.add_argument("--guidance", type=float, default=None, help="as for sample (embedded default 1)")
    add_model_flags(cal)
    cal.add_argument("--max-batch", type=max_batch_type(), default=DEFAULT_MAX_BATCH,
                     help="most rows per network call, or auto (as for sample)")
    cal.add_argument("--batch-invariant", action="store_true",
                     help="pad every call to exactly --max-batch rows (as bench's calibrations do)")
    cal.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_executor_flags(cal, "probes and validation runs")
    rel = sub.add_parser("reliability", help="measure R(sigma): how well a step's x0-prediction reward predicts the "
                                             "final reward (rank correlation over candidates)")
    rel.add_argument("--rewards", default=",".join(RELIABILITY_REWARDS),
                     help="comma-separated rewards to measure (default %(default)s)")
    rel.add_argument("--out", type=parse_out, required=True, help="directory for reliability.json and reliability.png")
    rel.add_argument("--conditions", type=int, default=RELIABILITY["conditions"],
                     help="conditions (labels drawn from --seed; default %(default)s)")
    rel.add_argument("--seed", type=int, default=RELIABILITY["seed"],
                     help="draws the labels; their sample seeds are disjoint from every sample and bench seed")
    rel.add_argument("--candidates", type=int, default=RELIABILITY["candidates"],
                     help="candidates per step and condition (at least 2)")
    rel.add_argument("--guidance", type=float, default=None, help="as for sample (embedded default 1)")
    add_model_flags(rel)
    rel.add_argument("--max-batch", type=max_batch_type(), default=DEFAULT_MAX_BATCH,
                     help="most rows per network call, or auto (as for sample)")
    rel.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo = sub.add_parser("demo", help="a local web app: search the embedded models from a browser, beside naive "
                                       "sampling at the same seed")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    demo.add_argument("--port", type=int, default=7860, help="port (0: a free one)")
    demo.add_argument("--max-minutes", type=float, default=3.0,
                      help="searches estimated to run longer ask the page for confirmation first")
    explore = sub.add_parser("explore", help="write one self-contained HTML page that shows a sample run step by "
                                             "step (run `sample` with --trace to see its searched steps)")
    explore.add_argument("run_dir", type=Path, help="directory written by `noisesearch sample --out` or by bench")
    explore.add_argument("--cell", help="a bench run's cell, by the slug its images/ and traces/ files start with")
    explore.add_argument("--out", type=Path, help="the page (default: RUN_DIR/explore.html, or "
                                                  "RUN_DIR/explore/SLUG.html for a bench cell)")
    report = sub.add_parser("report", help="write report.md and report.html for a bench run directory, or the "
                                           "calibration trade-off of several")
    report.add_argument("run_dir", type=Path, nargs="+",
                        help="directory written by `noisesearch bench`; with several (runs of the same labels whose "
                             "schedules were calibrated differently), the trade-off of calibration NFE against gain "
                             "kept (needs --out)")
    report.add_argument("--out", type=parse_out, help="report directory (default: RUN_DIR/report)")
    report.add_argument("--reference", help="reference features of the population metrics (FID, KID, IS, "
                                            "precision/recall): a packaged name or a .safetensors file (default: "
                                            "the one the run's backend names, e.g. mnist_t10k)")
    add_serve_verifier(sub)
    add_verifier_parser(sub)
    return parser


def add_serve_verifier(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve-verifier", help="serve a registered reward over HTTP (protocol "
                                                  "noisesearch-verifier/1, see docs/verifier-service.md)")
    serve.add_argument("reward", help="registered reward to serve (see `noisesearch list`)")
    serve.add_argument("--reward-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="a reward constructor argument, e.g. weights_dir=/path (repeatable)")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s: this "
                                                            "machine only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on, 0 for a free one "
                                                                      "(default %(default)s)")
    serve.add_argument("--device", default="cpu", help="where the reward runs: cpu, cuda or mps (default cpu)")
    serve.add_argument("--max-batch", type=int, default=LIMITS.max_batch,
                       help="most images per reward call; concurrent requests merge up to it (default %(default)s)")
    serve.add_argument("--max-delay-ms", type=float, default=LIMITS.max_delay_ms,
                       help="longest wait for more requests to merge, from the oldest waiting one (default "
                            "%(default)s)")
    serve.add_argument("--max-queue", type=int, default=LIMITS.max_queue,
                       help="most images waiting; beyond it a request is answered busy (503) (default %(default)s)")
    serve.add_argument("--max-request-images", type=int, default=LIMITS.max_request_images,
                       help="most images in one request; more is answered 413 (default %(default)s)")
    serve.add_argument("--max-body-mb", type=float, default=LIMITS.max_body_mb,
                       help="largest request body in MiB; larger is answered 413 (default %(default)s)")
    serve.add_argument("--placement", default="local", choices=("local", "ray"),
                       help="local (one process here, the default) or ray (Ray Serve replicas, see --replicas)")
    serve.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="placement ray: the cluster to join, e.g. HEAD_IP:6379 or auto (default: a cluster "
                            "started on this machine, else a new local Ray instance)")
    serve.add_argument("--replicas", type=int, default=None, help="placement ray: replicas of the reward (default 1)")
    serve.add_argument("--gpus-per-replica", type=float, default=None,
                       help="placement ray: GPUs per replica (Ray's num_gpus; 1 gives one GPU each; default 0)")


def cmd_serve_verifier(args: argparse.Namespace) -> None:
    limits = Limits(args.max_batch, args.max_delay_ms, args.max_queue, args.max_request_images, args.max_body_mb)
    reward_args = key_values(args.reward_arg, "--reward-arg")
    ray_flags = {"--ray-address": args.ray_address, "--replicas": args.replicas,
                 "--gpus-per-replica": args.gpus_per_replica}
    given = [flag for flag, value in ray_flags.items() if value is not None]
    if args.placement == "local" and given:
        raise NoiseSearchError(f"{', '.join(given)} need --placement ray: add it, or drop them")
    try:
        if args.placement == "local":
            from noisesearch.serving.server import serve_verifier as serve
        else:
            from noisesearch.serving.ray_serve import serve_verifier_ray

            serve = functools.partial(serve_verifier_ray, replicas=1 if args.replicas is None else args.replicas,
                                      gpus_per_replica=args.gpus_per_replica or 0.0, ray_address=args.ray_address)
    except ImportError as err:
        raise NoiseSearchError(f"serve-verifier needs FastAPI and uvicorn ({err.name} is missing): pip install "
                               '"noisesearch[serve]"') from None
    serve(args.reward, reward_args, host=args.host, port=args.port, device=args.device, limits=limits,
          on_ready=lambda url: print(f"serving reward '{args.reward}' at {url}", flush=True))


def add_verifier_parser(sub: argparse._SubParsersAction) -> None:
    from noisesearch.serving.environments import CACHE_ENV, RECIPES

    verifier = sub.add_parser("verifier", help="install a verifier into an environment of its own and serve it there")
    actions = verifier.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    cache_help = f"folder holding the environments (default: ${CACHE_ENV}, else ~/.cache/noisesearch/verifiers)"
    install = actions.add_parser("install", help="create a verifier's virtual environment with its pinned packages "
                                                 "and the serving shim")
    install.add_argument("name", choices=list(RECIPES))
    install.add_argument("--cache-dir", help=cache_help)
    install.add_argument("--allow-torch-download", action="store_true",
                         help="install a recipe that pins its own torch (vqascore), downloading that torch and its "
                              "CUDA packages")
    install.add_argument("--force", action="store_true", help="replace an existing environment")
    serve = actions.add_parser("serve", help="serve an installed verifier (noisesearch-verifier/1); search with "
                                             "--reward remote --reward-arg url=http://HOST:PORT")
    serve.add_argument("name", choices=list(RECIPES))
    serve.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                       help="local weight paths (docs/verifier-environments.md lists each verifier's)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--device", help="torch device (default: cuda where the environment's torch sees one)")
    serve.add_argument("--cache-dir", help=cache_help)


def cmd_verifier(args: argparse.Namespace) -> None:
    from noisesearch.serving import environments

    if args.action == "install":
        env = environments.install(args.name, args.cache_dir, args.allow_torch_download, args.force)
        print(f"installed verifier {args.name} at {env}; serve it with `noisesearch verifier serve {args.name} "
              "--weights ...`")
    else:
        environments.serve(args.name, args.weights, args.host, args.port, args.device, args.cache_dir)


def cmd_list() -> None:
    print("algorithms:")
    for name in algorithm_names():
        cls = algorithm_class(name)
        params = ", ".join(f"{k}={v}" for k, v in algorithm_params(name).items()) or "no parameters"
        print(f"  {name:<18} {params}")
        summary = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
        for text in (summary, f"NFE per image: {cls.nfe_doc}"):
            print(textwrap.fill(text, 110, initial_indent=" " * 21, subsequent_indent=" " * 21))
    print("rewards:")
    for name in reward_names():
        doc, params = describe_reward(name)
        print(f"  {name:<16} {shown_params(params)}")
        print(textwrap.fill(doc, 110, initial_indent=" " * 19, subsequent_indent=" " * 19))
        for kind in reward_kinds(name):
            print(f"  {'':<16} {kind}")
    print("feature extractors (--metrics-features):")
    for name in extractor_names():
        doc, params = describe_extractor(name)
        print(f"  {name:<16} {shown_params(params)}")
        print(textwrap.fill(doc, 110, initial_indent=" " * 19, subsequent_indent=" " * 19))
    print("backends:")
    for name in backend_names():
        backend = get_backend(name)
        guidance = "none (no unconditional branch)" if backend.default_guidance is None else backend.default_guidance
        print(f"  {name:<16} conditions: {backend.conditions}, default guidance: {guidance}, "
              f"default sampler: {backend.default_sampler}")
        print(textwrap.fill(backend.description, 110, initial_indent=" " * 19, subsequent_indent=" " * 19))
    print("samplers:")
    for name in sampler_names():
        print(textwrap.fill(describe_sampler(name), 110, initial_indent=f"  {name:<17}", subsequent_indent=" " * 19))


def shown_params(params: dict[str, Any]) -> str:
    """Constructor parameters for `list`: key=default, or key (required)."""
    return ", ".join(f"{k} (required)" if v is inspect.Parameter.empty else f"{k}={v}" for k, v in params.items()
                     ) or "no parameters"


def check_estimate(planned: PlannedSearch, confirmed: bool) -> None:
    """Print the estimate of a long run on stderr; refuse a very long one unless confirmed."""
    if planned.nfe_total() < ESTIMATE_MIN_NFE:
        return
    estimate = planned.estimate()
    if estimate.seconds < SHOW_ESTIMATE_S:
        return
    text = (f"about {estimate.nfe_per_image:,} NFE per image, {estimate.nfe_total:,} in all, "
            f"{estimate.seconds / 60:,.1f} min at the measured rate, memory: model {estimate.model_mb:,.0f} MB "
            f"+ {estimate.call_mb:,.0f} MB for a call of --max-batch rows")
    if estimate.seconds > CONFIRM_ESTIMATE_S and not confirmed:
        raise NoiseSearchError(f"this run needs {text}: pass --yes to start it")
    print(f"noisesearch: {text}", file=sys.stderr)


def chosen_params(args: argparse.Namespace, checked: bool = True) -> dict[str, Any]:
    """The algorithm parameters given as flags; where `checked`, a one-line error for one the algorithm lacks."""
    params = canonical_params(args.algorithm,
                              {k: getattr(args, k) for k in algorithm_flags() if getattr(args, k) is not None})
    accepted = algorithm_params(args.algorithm)
    extra = sorted(set(params) - set(accepted))
    if extra and checked:
        raise NoiseSearchError(f"{algorithm_flag_names(extra[0])[-1]} is not a parameter of '{args.algorithm}'; it "
                               f"takes: {', '.join(algorithm_flag_names(p)[-1] for p in accepted) or 'none'}")
    return params


def cmd_generate(args: argparse.Namespace, argv: list[str]) -> None:
    params = chosen_params(args)
    check_gpus_used(args, "shards")
    with executor_of(args) as executor:
        summary = run_generate(
            args.conditions, args.out, algorithm=args.algorithm, params=params, reward=args.reward,
            reward_args=key_values(args.reward_arg, "--reward-arg"),
            evaluator=None if args.evaluator == "none" else args.evaluator, backend=args.backend, model=args.model,
            sampler=args.sampler, steps=args.steps, guidance=args.guidance, seed=args.seed, max_batch=args.max_batch,
            nfe_budget=args.nfe_budget, device=args.device, dtype=args.dtype, shard_size=args.shard_size,
            keep_candidates=args.keep_candidates, trust_model_code=args.trust_model_code, executor=executor,
            progress=not args.no_progress, command="noisesearch " + shlex.join(argv))
    print(printable(summary.line(args.reward)))


def cmd_sample(args: argparse.Namespace, argv: list[str]) -> None:
    from noisesearch.api import plan_search
    from noisesearch.outputs import check_out_dir, clear_run, prepare_out_dir, removed_if_failed, write_result

    params = chosen_params(args, checked=args.online is None)  # run_online checks its own
    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        try:
            text = args.prompts_file.read_text(encoding="utf-8")
            prompts += [line.strip() for line in text.splitlines() if line.strip()]
        except OSError as err:
            raise NoiseSearchError(f"cannot read --prompts-file {args.prompts_file} ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise NoiseSearchError(f"--prompts-file {args.prompts_file} is not UTF-8 text (byte "
                                   f"0x{err.object[err.start]:02x} at offset {err.start}): save it as UTF-8") from None
    reward_args = key_values(args.reward_arg, "--reward-arg")
    settings = dict(
        reward=args.reward, labels=args.labels, seed=args.seed, guidance=args.guidance, steps=args.steps,
        sampler=args.sampler, max_batch=args.max_batch, batch_invariant=args.batch_invariant,
        nfe_budget=args.nfe_budget, evaluator=None if args.evaluator == "none" else args.evaluator,
        progress=not args.no_progress,
        backend=args.backend, model=args.model, prompts=prompts or None, device=args.device, dtype=args.dtype,
        compile=args.compile, reward_args=reward_args, trust_model_code=args.trust_model_code,
        trace_detail=args.trace)
    if args.metrics is not None:
        settings |= dict(metrics=args.metrics, metrics_features=args.metrics_features, metrics_reference=args.reference,
                         metrics_features_args=key_values(args.metrics_features_arg, "--metrics-features-arg"))
    elif args.metrics_features is not None or args.reference is not None or args.metrics_features_arg:
        raise NoiseSearchError("--metrics-features, --metrics-features-arg and --reference apply to --metrics: add "
                               "--metrics fid,kid,is,pr (or some of them), or drop them")
    if args.online is not None:
        if args.metrics is not None:
            raise NoiseSearchError("--metrics applies to a plain search, not --online: run the metrics on a "
                                   "sample run without --online")
        check_online_paths(args.online, args.out)
    elif args.online_batch is not None:
        raise NoiseSearchError("--online-batch applies to --online runs: add --online STATE, or drop it")
    if args.out.exists() and not args.out.is_dir():
        prepare_out_dir(args.out)  # its one-line error
    check_out_dir(args.out, args.overwrite)
    with removed_if_failed(args.out):
        prepare_out_dir(args.out)
        if args.online is not None:
            result = run_online(args, params, settings)
        else:
            planned = plan_search(algorithm=args.algorithm, **settings, **params)
            planned.algorithm.check_budget(planned.problem)
            check_estimate(planned, args.yes)
            result = planned.run()
        clear_run(args.out)
        record = write_result(result, args.out, command="noisesearch " + shlex.join(argv), trace=args.trace)
        if args.online is not None:
            from noisesearch.search.step_schedule import SearchSchedule

            SearchSchedule.from_dict(result.config["search_schedule"]).save(args.out / "schedule.json")
    ev = record["mean_evaluator"]
    print(f"{args.algorithm}: mean {args.reward} reward {record['mean_reward']:.4f}"
          + ("" if ev is None else f", evaluator {ev:.4f}")
          + f", {record['nfe_per_image']:.0f} NFE per image, {record['wall_time_s']:.1f} s -> {args.out}")
    for line in describe_metrics(record["metrics"]) if "metrics" in record else []:
        print(line)


ONLINE_PARAMS = ("target_nfe", "search_schedule", "moves", "beams", "windows", "learn_steps", "prior_weight",
                 "credit")


def check_online_paths(state: Path, out: Path) -> None:
    """A one-line error unless `state` can be a state file and is none of the paths the run writes (--out,
    its result.json, grid.png, schedule.json, images) nor a folder above --out."""
    from noisesearch.drivers.online import check_state_path
    from noisesearch.outputs import run_paths

    check_state_path(state)
    resolved, out_resolved = state.resolve(), out.resolve()
    written = [out_resolved, *(p.resolve() for p in run_paths(out))]
    if resolved in written or resolved in out_resolved.parents or (out_resolved / "images") in resolved.parents:
        raise NoiseSearchError(f"--online {state} is a path this run writes (--out {out} and its result.json, "
                               "grid.png, schedule.json, images): keep the state file elsewhere")


def run_online(args: argparse.Namespace, params: dict, settings: dict) -> SearchResult:
    """`sample --online`: adaptive_eps_greedy learning its schedule batch by batch (over the arms of --moves,
    --beams and --windows, if given); `cmd_sample` also writes the best arm's schedule to OUT/schedule.json for
    --search-schedule."""
    if args.algorithm != "adaptive_eps_greedy" or params.get("target_nfe") is None:
        raise NoiseSearchError("--online needs --algorithm adaptive_eps_greedy and --target-nfe N (calls per image)")
    extra = sorted(set(params) - set(ONLINE_PARAMS))
    if extra:
        raise NoiseSearchError("--online plans every batch's schedule itself: drop "
                               f"{algorithm_flag_names(extra[0])[-1]}")
    batch = ONLINE["batch"] if args.online_batch is None else args.online_batch
    return search_online(state=args.online, batch=batch, **params, **settings)


def cmd_bench(args: argparse.Namespace) -> None:
    from noisesearch.experiments.cells import preset_cells
    from noisesearch.experiments.presets import builtin_presets, get_preset, override

    if args.list:
        for name, preset in builtin_presets().items():
            columns = ", ".join(c.name for c in preset.rewards)
            print(f"{name}: {preset.description}")
            print(f"  {len(preset.runs)} runs x columns [{columns}] x {preset.labels} labels x {preset.repeats} "
                  f"repeat(s), {preset.steps} steps" + ("" if preset.backend == "embedded" else
                                                         f", backend {preset.backend}"))
            for run in preset.runs:
                print(f"    {run.label}")
        return
    if args.out is None:
        raise NoiseSearchError("bench needs --out DIR for its results (or --list to see the presets)")
    check_gpus_used(args, "cells")
    preset = override(get_preset(args.preset), args.algorithms, args.rewards, args.labels, args.repeats,
                      dict(args.calibration))
    with executor_of(args) as executor:
        results = run_bench(preset, args.out, seed=args.seed, max_batch=args.max_batch, device=args.device,
                            dtype=args.dtype, progress=not args.no_progress, backend=args.backend, model=args.model,
                            sampler=args.sampler, reuse=args.reuse, trust_model_code=args.trust_model_code,
                            executor=executor)
    print(printable(f"bench {preset.name}: {len(preset_cells(preset))} cells x {preset.labels} labels in {results}"))


def parse_moves(text: str) -> tuple[tuple[int, float, float], ...]:
    """'1,0.15,0.3;2,0.4,0.15' -> ((1, 0.15, 0.3), (2, 0.4, 0.15)); 'none' -> ()."""
    if text.strip().lower() == "none":
        return ()
    try:
        moves = []
        for part in text.split(";"):
            n, eps, lam = part.split(",")
            moves.append((int(n), float(eps), float(lam)))
        return tuple(moves)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of N,eps,lambda moves such as "
                                         "'1,0.15,0.3;2,0.4,0.15'") from None


def parse_field(text: str) -> tuple[str, Any]:
    """'conditions=5' -> ('conditions', 5): a field name and its JSON value."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=JSON, such as conditions=5 or beams=[1]") from None


def parse_beams(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); `calibrate` checks the values."""
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of beam widths such as '1,2,4'") from None


CALIBRATION_FLAGS = ("conditions", "seed", "method", "N", "K", "eps", "lambda_", "moves", "beams",
                     "validation_conditions", "target_nfe")  # the CalibrationConfig fields calibrate takes as flags


def cmd_calibrate(args: argparse.Namespace, argv: list[str]) -> None:
    from noisesearch.adaptive import CalibrationConfig
    from noisesearch.drivers.calibrate import calibration_summary

    if args.out.is_dir():
        raise NoiseSearchError(f"--out {args.out} is a directory; give the path of the schedule JSON to write")
    if not args.out.parent.is_dir():
        raise NoiseSearchError(f"--out {args.out}: directory {args.out.parent} does not exist")
    check_writable(args.out if args.out.exists() else args.out.parent, f"--out {args.out}")
    config = CalibrationConfig(**{name: getattr(args, name) for name in CALIBRATION_FLAGS
                                  if getattr(args, name) is not None})  # the library's defaults for the rest
    with executor_of(args) as executor:
        schedule = calibrate(args.reward, config, executor, steps=args.steps, sampler=args.sampler,
                             backend=args.backend, model=args.model, guidance=args.guidance, max_batch=args.max_batch,
                             batch_invariant=args.batch_invariant,
                             progress=not args.no_progress, trust_model_code=args.trust_model_code)
    schedule = dataclasses.replace(schedule, info=schedule.info | {"command": "noisesearch " + shlex.join(argv)})
    schedule.save(args.out)
    print(schedule.table())
    print(calibration_summary(schedule) + f" -> {args.out}")


def printable(text: str) -> str:
    """`text` with what standard output could not encode (a path that is no UTF-8) as backslash escapes."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)


def cmd_demo(args: argparse.Namespace) -> None:
    try:
        from noisesearch.demo.app import serve_demo
    except ImportError as err:
        raise NoiseSearchError(f"the demo needs FastAPI and uvicorn ({err}): pip install "
                               "'noisesearch[demo]'") from None
    if not (args.max_minutes > 0 and math.isfinite(args.max_minutes)):
        raise NoiseSearchError(f"--max-minutes must be a positive number, got {args.max_minutes}")
    serve_demo(args.host, args.port, args.max_minutes * 60)


def cmd_explore(args: argparse.Namespace) -> None:
    from noisesearch.explore import explore

    start = time.perf_counter()
    page = explore(args.run_dir, args.out, args.cell)
    print(printable(f"wrote {page} ({page.stat().st_size / 1024:.0f} KB in {time.perf_counter() - start:.1f} s)"))


def cmd_report(args: argparse.Namespace) -> None:
    from noisesearch.experiments.report import write_report
    from noisesearch.experiments.tradeoff_report import write_tradeoff_report

    if len(args.run_dir) == 1:
        md, page = write_report(args.run_dir[0], args.out, args.reference)
    elif args.out is None:
        raise NoiseSearchError("a report of several run directories needs --out DIR")
    else:
        md, page = write_tradeoff_report(args.run_dir, args.out)
    print(printable(f"wrote {md} and {page}"))


def cmd_reliability(args: argparse.Namespace, argv: list[str]) -> None:
    from noisesearch.drivers.reliability import reliability_table, write_reliability

    rewards = [r.strip() for r in args.rewards.split(",") if r.strip()]
    check_writable_folder(args.out, f"--out {args.out}")
    measured = measure_reliability(rewards, args.conditions, args.seed, args.candidates, backend=args.backend,
                                   model=args.model, sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                                   max_batch=args.max_batch, progress=not args.no_progress,
                                   trust_model_code=args.trust_model_code)
    data, figure = write_reliability(measured, args.out, "noisesearch " + shlex.join(argv))
    print(reliability_table(measured))
    print(f"{sum(m['nfe'] for m in measured.values())} NFE -> {data}, {figure}")


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """warnings.showwarning for the command line: one line, no source location."""
    print(f"noisesearch: warning: {message}", file=sys.stderr if file is None else file)


def terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"noisesearch: terminated by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """The command line; with argv None (the installed command) it also prints warnings on one line and
    ends on SIGTERM as on Ctrl-C, with one line."""
    if argv is None:
        argv = sys.argv[1:]
        warnings.showwarning = one_line_warning
        signal.signal(signal.SIGTERM, terminate)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            cmd_list()
        elif args.command == "bench":
            cmd_bench(args)
        elif args.command == "calibrate":
            cmd_calibrate(args, argv)
        elif args.command == "reliability":
            cmd_reliability(args, argv)
        elif args.command == "generate":
            cmd_generate(args, argv)
        elif args.command == "report":
            cmd_report(args)
        elif args.command == "explore":
            cmd_explore(args)
        elif args.command == "demo":
            cmd_demo(args)
        elif args.command == "serve-verifier":
            cmd_serve_verifier(args)
        elif args.command == "verifier":
            cmd_verifier(args)
        else:
            cmd_sample(args, argv)
    except NoiseSearchError as err:
        print(f"noisesearch: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("noisesearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the reader left: stay quiet at exit
        return 141
    except OSError as err:
        if err.filename is not None:
            raise
        print(f"noisesearch: cannot write output ({err.strerror})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
