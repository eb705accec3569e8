"""What a run ran on: versions, machine, device and the git state of the package, recorded beside results."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.version import __version__


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, the device the network runs on, machine (CPU model and the vector instructions torch's
    kernels use: results can differ in the last bits between CPUs), git commit of this run and whether the
    package's source differed from it."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=here).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                                    timeout=10, cwd=here).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit = dirty = None
    return {
        "noisesearch": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "processor": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": device,
        "git_commit": commit, "git_dirty": dirty, "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
