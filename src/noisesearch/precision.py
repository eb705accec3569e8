"""Whether a device computes bfloat16 natively: where it does not, bf16 autocast is emulated and slower than
float32 there (the network's matrix products are widened to float32 and narrowed back), so asking for it there
warns once, naming the faster choice.

CPUs: x86 with AVX512-BF16 or AMX-BF16, Arm with the BF16 extension (Linux reports both in /proc/cpuinfo's
flags); CUDA: torch.cuda.is_bf16_supported(); elsewhere unknown (no warning).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch

from noisesearch.errors import NoiseSearchWarning

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX512-BF16 and AMX-BF16; Arm's FEAT_BF16


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags as Linux lists them (None where it lists none, e.g. on macOS)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags or None


def native_bf16(device: str) -> bool | None:
    """Whether `device` computes bfloat16 natively (None: not known)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        flags = cpu_flags()
        return None if flags is None else bool(flags & BF16_FLAGS)
    return None


@functools.cache
def warn_emulated_bf16(device: str) -> None:
    """Warn (once per device and process) where bfloat16 would run emulated on `device`."""
    if native_bf16(device) is False:
        where = "this CPU has no AVX512-BF16, AMX or Arm BF16 units" if device.startswith("cpu") else \
            f"{device} has no native bfloat16"
        warnings.warn(f"--dtype bfloat16: {where}, so bfloat16 runs emulated and slower than float32: use --dtype "
                      "float32 (the default)", NoiseSearchWarning, stacklevel=3)
