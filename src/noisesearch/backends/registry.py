"""Backends register under a name: how a model loads as a Denoiser, what its conditions are, its defaults."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.checks import is_int, is_real, shown
from noisesearch.denoiser import Denoiser
from noisesearch.errors import NoiseSearchError
from noisesearch.naming import claim_name
from noisesearch.precision import warn_emulated_bf16

MAX_LABEL = 2**63 - 1  # the largest int64: labels become a long tensor
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LoadRequest:
    """What a backend's loader gets: the model path (None: the backend's own), the guidance weight, the
    prompts of a prompt backend, device and dtype, whether the user trusts model files that run code
    when loaded (pickles; --trust-model-code), and whether to run the network through torch.compile."""

    model: str | None
    guidance: float
    prompts: Sequence[str] | None
    device: str
    dtype: torch.dtype
    trust_model_code: bool = False
    compile: bool = False


@dataclass(frozen=True)
class Backend:
    """A model family in the D(x, sigma, cond) convention.

    conditions: "labels" (class indices) or "prompts" (condition i is prompt i); default_guidance: its
    classifier-free guidance weight when none is given (None: the model has no unconditional branch and
    takes none); default_sampler: a registered sampler name; evaluator: the held-out reward that scores
    final images by default (None: none); features and reference: the registered feature extractor (see
    noisesearch.metrics) that bench keeps every image's features under and the reference feature set the report
    compares them with, for population metrics (None: none); needs_model: whether `model` (a path) is required."""

    name: str
    description: str
    load: Callable[[LoadRequest], Denoiser]
    conditions: str = "labels"
    default_guidance: float | None = 1.0
    default_sampler: str = "heun"
    evaluator: str | None = None
    features: str | None = None
    reference: str | None = None
    needs_model: bool = False
    model_help: str = ""
    compiles: bool = False

    def __post_init__(self) -> None:
        if self.conditions not in ("labels", "prompts"):
            raise ValueError(f"backend conditions must be 'labels' or 'prompts', got '{self.conditions}'")

    def guidance_or_default(self, guidance: float | None) -> float:
        """The guidance weight to use, or a one-line error for a non-finite one or one the model cannot take."""
        if guidance is not None and not (is_real(guidance) and math.isfinite(guidance)):
            raise NoiseSearchError(f"guidance must be a finite number, got {shown(guidance)}")
        if self.default_guidance is None:
            if guidance not in (None, 1.0):
                raise NoiseSearchError(f"{self.name} models have no unconditional branch: leave --guidance at 1")
            return 1.0
        return self.default_guidance if guidance is None else float(guidance)

    def make_conditions(self, labels: Sequence[int] | None, prompts: Sequence[str] | None
                        ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The condition tensor of a Problem and the config entry that names the conditions (one-line errors for
        prompts that are not a list of strings, labels that are not a list, 1-D integer tensor or array of
        class indices)."""
        if self.conditions == "prompts":
            if isinstance(prompts, str) or (prompts is not None and not isinstance(prompts, Sequence)):
                raise NoiseSearchError(f"prompts must be a list of strings, got {shown(prompts)}")
            if not prompts:
                raise NoiseSearchError(f"the {self.name} backend needs at least one prompt")
            if not all(isinstance(p, str) for p in prompts):
                raise NoiseSearchError(f"prompts must be a list of strings, got {shown(prompts)}")
            return torch.arange(len(prompts)), {"prompts": list(prompts)}
        if prompts:
            raise NoiseSearchError(f"prompts need a prompt backend such as diffusers; {self.name} takes --labels")
        cond = torch.tensor(class_indices(labels), dtype=torch.long)
        if len(cond) == 0:
            raise NoiseSearchError("give at least one condition")
        return cond, {"labels": cond.tolist()}


def class_indices(labels: object) -> list[int]:
    """Labels as a list of Python ints: a list or tuple of integers, or a 1-D integer tensor or array; a one-line
    error for anything else (floats, bools, nested lists, a bare number or string) or a negative label."""
    if labels is None:
        return []
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        integer = (not labels.dtype.is_floating_point and not labels.dtype.is_complex and labels.dtype != torch.bool
                   if isinstance(labels, torch.Tensor) else labels.dtype.kind in "iu")
        if not integer or labels.ndim != 1:
            raise NoiseSearchError(f"labels must be a 1-D integer tensor or array (or a list of integers), got a "
                                   f"{labels.ndim}-D {str(labels.dtype).removeprefix('torch.')} one")
        labels = labels.tolist()
    if (isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence)
            or not all(is_int(label) for label in labels)):
        raise NoiseSearchError(f"labels must be a list of integers (class indices), got {shown(labels)}")
    values = [int(label) for label in labels]
    bad = [v for v in values if not 0 <= v <= MAX_LABEL]
    if bad:
        raise NoiseSearchError(f"label {shown(bad[0])} is not a class index: labels are integers from 0")
    return values


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Make a backend selectable by its name (CLI --backend, `search(backend=...)`, bench). A name that
    another backend holds is a NoiseSearchError unless `replace=True`; the same backend again (same
    loader: a module imported twice) is no clash."""
    claim_name(_BACKENDS, backend.name, backend, "backend", replace, definition=lambda entry: entry.load)
    return backend


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    if not isinstance(name, str) or name not in _BACKENDS:
        raise NoiseSearchError(f"unknown backend {shown(name)}: choose one of {', '.join(backend_names())}")
    return _BACKENDS[name]


def check_device(device: str) -> None:
    """A one-line error unless torch knows `device` and it is available on this machine."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise NoiseSearchError(f"unknown device '{device}': use cpu, cuda, cuda:N or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, False):
        raise NoiseSearchError(f"device '{device}' is not available on this machine (torch "
                               f"{torch.__version__}): use --device cpu")


def check_dtype(dtype: str) -> None:
    """A one-line error for a dtype no backend takes."""
    if dtype not in DTYPES:
        raise NoiseSearchError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")


def model_identity(model: str | None) -> str | None:
    """A model as run.json and job.json name it: the absolute path of an existing file or directory, else as given."""
    if model is None:
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def load_backend_denoiser(name: str, model: str | None = None, guidance: float | None = None,
                          prompts: Sequence[str] | None = None, device: str = "cpu", dtype: str = "float32", *,
                          trust_model_code: bool = False, compile: bool = False) -> Denoiser:
    """The denoiser of backend `name` (defaults as the backend declares them). `trust_model_code` lets a
    backend load model files that run code when loaded (pickles); without it they are a NoiseSearchError.
    `compile` runs the network through torch.compile (backends that declare `compiles`). bfloat16 on a device
    without native bf16 warns once (noisesearch.precision)."""
    backend = get_backend(name)
    check_dtype(dtype)
    if compile and not backend.compiles:
        compiling = ", ".join(b.name for b in _BACKENDS.values() if b.compiles) or "none"
        raise NoiseSearchError(f"the {name} backend does not take --compile (backends that do: {compiling})")
    if model is None and backend.needs_model:
        raise NoiseSearchError(f"the {name} backend needs --model PATH ({backend.model_help})")
    check_device(device)
    if dtype == "bfloat16":
        warn_emulated_bf16(device)
    return backend.load(LoadRequest(model, backend.guidance_or_default(guidance), prompts, device, DTYPES[dtype],
                                    trust_model_code, compile))
