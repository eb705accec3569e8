"""Executors run independent tasks (bench cells, calibration runs) and hand their outcomes back to the driver.

One small interface, three engines:
- `SerialExecutor`: one task after another in this process (the default);
- `ProcessExecutor`: a pool of W local worker processes (spawned, each with its torch threads set so that
  the W workers share the cores);
- `RayExecutor`: Ray tasks, on a cluster (`ray.init(address)`) or a local instance; Ray is imported only here.

A task is `fn(task)` with `fn` a module-level function and `task` picklable; it must touch no file (workers
may have no shared disk): its value comes back to the driver, which alone writes. A task that raises fails
alone: its outcome carries the error and the rest go on. A worker that dies while running a task (killed,
out of memory, a lost Ray node) has that task retried, up to `retries` more times, then it is a failure too.
`map` yields exactly one outcome per task, in the order they finish.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from typing import Any

import torch

from noisesearch.errors import NoiseSearchError

EXECUTORS = ("serial", "process", "ray")
DEFAULT_RETRIES = 2  # further attempts of a task whose worker died
POLL_S = 1.0  # how often a waiting driver wakes (so Ctrl-C and signals are handled)


@dataclass(frozen=True)
class Resources:
    """What one task needs: CPUs (None: the executor's share per task), GPUs (fractions allowed on Ray) and an
    estimate of its memory in MB (None: unknown). Only Ray schedules by GPUs and memory."""

    cpus: float | None = None
    gpus: float = 0.0
    memory_mb: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of task `index`: its value, or its error (one line) and traceback; how many times it was
    started (None where the engine does not tell: Ray retries on its own) and where it ran (pid, host, CPU and
    wall seconds of the last attempt; empty where the worker died)."""

    index: int
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    attempts: int | None = 1
    worker: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def execute(fn: Callable[..., Any], task: Any, threads: int | None = None, **kwargs: Any
            ) -> tuple[Any, str | None, str | None, dict[str, Any]]:
    """Run `fn(task, **kwargs)` where a worker stands (with `threads` torch threads where given): its value,
    error and traceback (None, None where it succeeded) and where and how long it ran."""
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    start, cpu = time.perf_counter(), time.process_time()
    value = error = trace = None
    try:
        value = fn(task, **kwargs)
    except NoiseSearchError as err:
        error = collapse_whitespace(str(err))
    except Exception as err:  # noqa: BLE001  (a task's failure is its outcome, not the driver's)
        error, trace = collapse_whitespace(f"{type(err).__name__}: {err}"), traceback.format_exc()
    worker = {"pid": os.getpid(), "host": socket.gethostname(), "cpu_s": time.process_time() - cpu,
              "wall_s": time.perf_counter() - start, "threads": torch.get_num_threads()}
    return value, error, trace, worker


class Executor:
    """Runs tasks and yields their outcomes as they finish. `reports_progress`: whether a task's progress
    callback reaches the driver while it runs (only in the driver's own process); `schedules_memory`: whether
    a task's memory estimate is used (worth measuring)."""

    name = "serial"
    reports_progress = True
    schedules_memory = False

    def map(self, fn: Callable[..., Any], tasks: Sequence[Any], resources: Sequence[Resources] | None = None,
            callback: Any = None) -> Iterator[Outcome]:
        """One outcome per task, as they finish; `callback` goes to `fn` where the task runs in this process."""
        raise NotImplementedError

    def run_all(self, fn: Callable[..., Any], tasks: Sequence[Any], what: str = "task") -> list[Any]:
        """The values of all tasks in their order, or a one-line NoiseSearchError naming the first that failed
        (for work that needs every part, such as a calibration)."""
        values: list[Any] = [None] * len(tasks)
        for outcome in self.map(fn, tasks):
            if not outcome.ok:
                raise NoiseSearchError(f"{what} {outcome.index + 1} of {len(tasks)} failed: {outcome.error}")
            values[outcome.index] = outcome.value
        return values

    def check(self, resources: Resources) -> None:
        """A one-line NoiseSearchError where this executor could never run a task needing `resources` (checked
        before a run writes anything); engines that schedule no resources accept every task."""

    def describe(self) -> dict[str, Any]:
        """The executor's settings, for logs."""
        return {"executor": self.name}

    def close(self) -> None:
        """Stop what the executor started (worker processes, a local Ray instance)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Each task in this process, one after another, with the driver's progress callback."""

    def map(self, fn: Callable[..., Any], tasks: Sequence[Any], resources: Sequence[Resources] | None = None,
            callback: Any = None) -> Iterator[Outcome]:
        for index, task in enumerate(tasks):
            value, error, trace, worker = execute(fn, task, **({} if callback is None else {"callback": callback}))
            yield Outcome(index, value, error, trace, 1, worker)


def share_of_cores(workers: int) -> int:
    """Torch threads per worker so that `workers` workers share this machine's cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // workers)


def worker_main(conn: connection.Connection) -> None:
    """A process worker: run (fn, task, threads) messages until None or the driver goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops the workers
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, task, threads = message
        result = execute(fn, task, threads)
        try:
            conn.send(result)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            conn.send((None, collapse_whitespace(f"the task's value cannot be sent back: {err}"), None, result[3]))
        except (BrokenPipeError, OSError):
            return


@dataclass
class Worker:
    process: Any
    conn: connection.Connection
    task: tuple[int, int] | None = None  # (index, attempt) in flight


class ProcessExecutor(Executor):
    """A pool of `workers` local processes (spawned: each imports the package afresh), kept for the executor's
    life so that a model a worker loaded serves its later tasks. Each task runs with `cpus_per_task` torch
    threads (default: the workers' share of the cores). A worker that dies mid-task is replaced and the task
    retried up to `retries` times."""

    name = "process"
    reports_progress = False

    def __init__(self, workers: int | None = None, cpus_per_task: int | None = None,
                 retries: int | None = None) -> None:
        workers = (os.cpu_count() or 1) if workers is None else workers
        retries = DEFAULT_RETRIES if retries is None else retries
        check_count(workers, "--workers", 1)
        check_count(retries, "--retries", 0)
        if cpus_per_task is not None:
            check_count(cpus_per_task, "--cpus-per-cell", 1)
        self.workers, self.retries = workers, retries
        self.cpus_per_task = cpus_per_task or share_of_cores(workers)
        self.pool: list[Worker] = []
        self.context = get_context("spawn")

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "cpus_per_task": self.cpus_per_task,
                "retries": self.retries}

    def busy_pids(self) -> list[int]:
        """The pids of the workers running a task now."""
        return [w.process.pid for w in self.pool if w.task is not None]

    def start_worker(self) -> Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(child,), daemon=True, name="noisesearch-worker")
        process.start()
        child.close()
        return Worker(process, parent)

    def map(self, fn: Callable[..., Any], tasks: Sequence[Any], resources: Sequence[Resources] | None = None,
            callback: Any = None) -> Iterator[Outcome]:
        threads = [self.cpus_per_task if r is None or r.cpus is None else int(r.cpus)
                   for r in (resources or [None] * len(tasks))]
        queue: deque[tuple[int, int]] = deque((i, 1) for i in range(len(tasks)))
        while len(self.pool) < min(self.workers, len(tasks)):
            self.pool.append(self.start_worker())
        left = len(tasks)
        try:
            while left:
                for n, worker in enumerate(self.pool):
                    if worker.task is None and queue:
                        index, attempt = queue.popleft()
                        if self.send(worker, (fn, tasks[index], threads[index])):
                            worker.task = (index, attempt)
                        else:  # it died idle: its task waits for the one that replaces it
                            queue.appendleft((index, attempt))
                            self.pool[n] = self.start_worker()
                busy = [w for w in self.pool if w.task is not None]
                ready = connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], POLL_S)
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    index, attempt = worker.task
                    outcome = self.receive(worker, index, attempt)
                    worker.task = None
                    if outcome is None:  # the worker died: replace it, run its task again or give up
                        self.pool[self.pool.index(worker)] = self.start_worker()
                        if attempt <= self.retries:
                            queue.append((index, attempt + 1))
                            continue
                        code = worker.process.exitcode
                        outcome = Outcome(index, None, f"the worker running it died {attempt} times (last exit "
                                                       f"code {code}, a negative one is the signal)", None, attempt)
                    left -= 1
                    yield outcome
        except BaseException:
            self.close()  # workers may be running tasks the driver no longer waits for
            raise

    def send(self, worker: Worker, message: tuple[Any, Any, int]) -> bool:
        """Hand a task to an idle worker; False where the worker is gone."""
        try:
            data = pickle.dumps(message)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise NoiseSearchError(collapse_whitespace(
                f"the process executor cannot send a task to its workers ({err}): give module-level functions and "
                "plain data")) from None
        try:
            worker.conn.send_bytes(data)
        except OSError:
            worker.process.join(POLL_S)
            worker.conn.close()
            return False
        return True

    def receive(self, worker: Worker, index: int, attempt: int) -> Outcome | None:
        """The outcome a worker sent, or None where it died before sending one."""
        try:
            if worker.conn.poll():
                value, error, trace, where = worker.conn.recv()
                return Outcome(index, value, error, trace, attempt, where)
        except (EOFError, OSError):
            pass
        worker.process.join(POLL_S)
        if worker.process.is_alive():  # it closed its end without a result: it is going
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
        return None

    def close(self) -> None:
        for worker in self.pool:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for worker in self.pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.pool = []


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NoiseSearchError('--executor ray needs Ray: pip install "noisesearch[ray]"') from None
    return ray


CONNECT_S = 5.0  # how long a Ray address may take to accept a connection before it counts as unreachable


def check_reachable(address: str | None, timeout: float = CONNECT_S) -> None:
    """A one-line NoiseSearchError unless a Ray address of the form HOST:PORT (or ray://HOST:PORT) accepts a TCP
    connection within `timeout` seconds: ray.init would otherwise retry for minutes. Other addresses (None, auto,
    local) are left to Ray."""
    if address is None:
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        reason = "no answer" if isinstance(err, TimeoutError) else getattr(err, "strerror", None) or str(err)
        raise NoiseSearchError(collapse_whitespace(
            f"cannot reach Ray at {address} ({reason}): start the cluster there (ray start --head) or give another "
            "--ray-address")) from None


class RayExecutor(Executor):
    """Ray tasks of `cpus_per_task` CPUs and `gpus_per_task` GPUs each (and the memory a task declares), retried
    by Ray up to `retries` times where their worker or node dies. Uses the Ray instance this process is already
    connected to, else `ray.init(address)` (None: Ray's default, a cluster found on this machine or a new local
    instance), which `close` shuts down again."""

    name = "ray"
    reports_progress = False
    schedules_memory = True

    def __init__(self, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0,
                 retries: int | None = None, **init_args: Any) -> None:
        retries = DEFAULT_RETRIES if retries is None else retries
        check_count(retries, "--retries", 0)
        for value, flag in ((cpus_per_task, "--cpus-per-cell"), (gpus_per_task, "--gpus-per-cell")):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
                raise NoiseSearchError(f"{flag} must be a number of at least 0, got {value}")
        self.ray = import_ray()
        self.cpus_per_task, self.gpus_per_task, self.retries = cpus_per_task, gpus_per_task, retries
        self.started = not self.ray.is_initialized()
        if self.started:
            check_reachable(address)
            try:
                self.ray.init(address=address, **init_args)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise NoiseSearchError(collapse_whitespace(
                    f"cannot start or reach Ray at {address or 'this machine'}: {err}")) from None
        self.remote = self.ray.remote(execute)
        self.settings = {"executor": self.name, "cpus_per_task": cpus_per_task, "gpus_per_task": gpus_per_task,
                         "retries": retries, "cluster": {k: v for k, v in self.ray.cluster_resources().items()
                                                         if k in ("CPU", "GPU", "memory")}}

    def describe(self) -> dict[str, Any]:
        return self.settings

    def check(self, resources: Resources) -> None:
        self.options(resources, self.ray.cluster_resources())

    def options(self, resources: Resources | None, have: dict[str, float]) -> dict[str, Any]:
        """Ray's options for a task of `resources` on a cluster of resources `have`; a one-line error where
        the cluster could never run it."""
        cpus = self.cpus_per_task if resources is None or resources.cpus is None else resources.cpus
        gpus = self.gpus_per_task if resources is None or not resources.gpus else resources.gpus
        options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": self.retries}
        if resources is not None and resources.memory_mb:
            options["memory"] = max(1, int(resources.memory_mb * 2**20))
        for name, key, need in (("CPUs", "CPU", cpus), ("GPUs", "GPU", gpus),
                                ("MB of memory", "memory", options.get("memory", 0) / 2**20)):
            total = have.get(key, 0) / (2**20 if key == "memory" else 1)
            if need > total:
                raise NoiseSearchError(f"a task needs {need:g} {name} but the Ray cluster has {total:g} in all: "
                                       "ask for less per cell or add nodes")
        return options

    def map(self, fn: Callable[..., Any], tasks: Sequence[Any], resources: Sequence[Resources] | None = None,
            callback: Any = None) -> Iterator[Outcome]:
        ray = self.ray
        resources = resources or [None] * len(tasks)
        refs, have = {}, ray.cluster_resources()
        for index, (task, need) in enumerate(zip(tasks, resources, strict=True)):
            options = self.options(need, have)
            refs[self.remote.options(**options).remote(fn, task, max(1, int(options["num_cpus"])))] = index
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                for ref in done:
                    try:
                        value, error, trace, worker = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the worker or node died more than `retries` times
                        error = collapse_whitespace(f"{type(err).__name__}: {err}")[:2000]
                        value, trace, worker = None, None, {}
                    yield Outcome(refs[ref], value, error, trace, None, worker)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False


def check_count(value: Any, flag: str, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise NoiseSearchError(f"{flag} must be an integer of at least {least}, got {value}")


def make_executor(name: str = "serial", *, workers: int | None = None, ray_address: str | None = None,
                  cpus_per_cell: float | None = None, gpus_per_cell: float | None = None,
                  retries: int | None = None) -> Executor:
    """The executor of the CLI's --executor NAME and its options; a one-line error for options it cannot take.
    `retries` None is the executor's default (DEFAULT_RETRIES where workers can die; the serial executor takes
    none)."""
    if name not in EXECUTORS:
        raise NoiseSearchError(f"unknown executor '{name}': choose one of {', '.join(EXECUTORS)}")
    given = {"--workers": workers, "--ray-address": ray_address, "--gpus-per-cell": gpus_per_cell,
             "--retries": retries}
    takes = {"serial": (), "process": ("--workers", "--retries"),
             "ray": ("--ray-address", "--gpus-per-cell", "--retries")}[name]
    wrong = [flag for flag, value in given.items() if value is not None and flag not in takes]
    if name == "serial" and cpus_per_cell is not None:
        wrong.append("--cpus-per-cell")
    if wrong:
        raise NoiseSearchError(f"{wrong[0]} does not apply to --executor {name}")
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        if cpus_per_cell is not None and not float(cpus_per_cell).is_integer():
            raise NoiseSearchError(f"--cpus-per-cell must be a whole number for --executor process, got "
                                   f"{cpus_per_cell}")
        return ProcessExecutor(workers, None if cpus_per_cell is None else int(cpus_per_cell), retries)
    return RayExecutor(ray_address, 1.0 if cpus_per_cell is None else cpus_per_cell, gpus_per_cell or 0.0, retries)
