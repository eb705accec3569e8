"""Isolated verifier environments: one virtual environment per verifier, holding its pinned packages and the
serving shim, so that verifiers whose pins conflict (image-reward's timm==0.6.13, hpsv3's transformers==4.45.2,
t2v-metrics' torch==2.5.1) never meet each other or the user's environment. See docs/verifier-environments.md.

An environment borrows the running torch instead of downloading one: `python -m venv --system-site-packages`
would expose the base interpreter's packages, not those of the environment noisesearch runs in (itself usually a
venv), so `install` links torch and the distributions it requires into the environment (a .pth file naming a
folder of symbolic links) and pins torch to the running version with a pip constraints file. A recipe whose
packages pin another torch cannot resolve that way and is refused unless the user allows the download.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from noisesearch import verifier_protocol
from noisesearch.errors import NoiseSearchError
from noisesearch.files import read_json_file, write_atomically

CACHE_ENV = "NOISESEARCH_VERIFIER_CACHE"
DEFAULT_CACHE = Path("~/.cache/noisesearch/verifiers")
MANIFEST = "noisesearch-verifier.json"
FORMAT = 1
HOST_PACKAGES = "host-packages"  # the folder of links to the running torch and what it requires
SHIM = Path(__file__).parent / "shim" / "server.py"
ADAPTERS = Path(__file__).parent / "adapters"
SHIM_PACKAGES = ("safetensors", "numpy", "pillow")  # the shim's own needs, left for pip to fit among the pins
BORROWED = ("torch",)  # the running environment's distributions an environment links instead of installing
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # adapters load local weights only


@dataclass(frozen=True)
class Recipe:
    """A verifier's environment: the pinned packages pip installs, the adapter the shim serves, and the torch the
    packages pin where they pin one (such a recipe cannot borrow the running torch)."""

    name: str
    packages: tuple[str, ...]
    adapter: str
    torch_pin: str | None = None

    @property
    def weights(self) -> dict[str, str]:
        """Each local weight path the adapter needs, and what it is."""
        return dict(importlib.import_module(f"noisesearch.serving.adapters.{self.adapter}").WEIGHTS)


RECIPES = {recipe.name: recipe for recipe in [
    # image-reward 1.5 pins timm==0.6.13 and fairscale==0.4.13 but no transformers ceiling, while its BLIP code
    # imports helpers that transformers 5 no longer has; it imports OpenAI's `clip` without requiring it, whose
    # fork clip-anytorch imports pkg_resources, gone from setuptools 81 (the one torch brings may be newer).
    Recipe("imagereward", ("image-reward==1.5", "timm==0.6.13", "fairscale==0.4.13", "transformers==4.45.2",
                           "clip-anytorch==2.6.0", "setuptools<81"), "imagereward"),
    # HPSv2's checkpoints in open_clip's ViT-H-14 (the hpsv2 wheel lacks its tokenizer vocabulary).
    Recipe("hpsv2", ("open-clip-torch==3.3.0",), "hpsv2"),
    # hpsv3 1.0.0 pins transformers==4.45.2 and requires deepspeed, trl, peft, diffusers and datasets.
    Recipe("hpsv3", ("hpsv3==1.0.0", "transformers==4.45.2"), "hpsv3"),
    Recipe("pickscore", ("transformers==5.25.0",), "pickscore"),
    # t2v-metrics 3.0 pins torch==2.5.1, torchvision==0.20.1, transformers==4.49.0 and numpy==1.26.4.
    Recipe("vqascore", ("t2v-metrics==3.0",), "vqascore", torch_pin="torch==2.5.1"),
]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise NoiseSearchError(f"unknown verifier {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where environments live: `cache_dir`, else $NOISESEARCH_VERIFIER_CACHE, else ~/.cache/noisesearch/verifiers."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser().absolute()


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def host_packages(names: tuple[str, ...]) -> list[Path]:
    """The top-level files and folders of the running environment's distributions `names` and of every
    distribution they require (transitively, markers evaluated): what an environment links to borrow them."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    paths: list[Path] = []
    pending = list(names)
    while pending:
        name = re.sub(r"[-_.]+", "-", pending.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        paths += sorted(Path(str(dist.locate_file(top))) for top in tops - {"__pycache__"} if not top.endswith(".pth"))
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return paths


def install_commands(recipe: Recipe, env: Path, torch_version: str | None) -> list[list[str]]:
    """The commands that make the environment: a venv without pip of its own (made in a second, where ensurepip
    takes ten), then the running environment's pip installing the recipe's pins into it through `--python` (and,
    where the running torch is borrowed, a constraints file holding torch to `torch_version`)."""
    pip = [sys.executable, "-m", "pip", "--python", str(venv_python(env)), "install", "--disable-pip-version-check",
           "--no-input"]
    if torch_version is not None:
        pip += ["-c", str(env / "constraints.txt")]
    return [[sys.executable, "-m", "venv", "--without-pip", str(env)], pip + [*recipe.packages, *SHIM_PACKAGES]]


def install(name: str, cache_dir: str | Path | None = None, allow_torch_download: bool = False,
            force: bool = False) -> Path:
    """Create verifier `name`'s environment under the cache root and return its folder; pip's output goes to
    `<folder>.log`. A failed install removes the folder (the log stays)."""
    recipe = get_recipe(name)
    if importlib.util.find_spec("pip") is None:
        raise NoiseSearchError("verifier install runs pip from this environment, which has none: install pip here "
                               "(python -m ensurepip)")
    if recipe.torch_pin and not allow_torch_download:
        raise NoiseSearchError(f"verifier {name} pins {recipe.torch_pin}, which would download a second torch and "
                               "its CUDA packages instead of using the installed one; pass --allow-torch-download "
                               "to install it anyway")
    env = cache_root(cache_dir) / name
    if env.exists() and not force:
        raise NoiseSearchError(f"verifier {name} already has an environment at {env}; pass --force to replace it")
    shutil.rmtree(env, ignore_errors=True)
    env.parent.mkdir(parents=True, exist_ok=True)
    log = env.with_name(f"{name}.log")
    torch_version = None if recipe.torch_pin else importlib.metadata.version("torch")
    links = [] if recipe.torch_pin else host_packages(BORROWED)
    venv, pip = install_commands(recipe, env, torch_version)
    try:
        with log.open("w") as out:
            run(venv, "making the venv", out, log)
            if torch_version is not None:
                borrow(env, torch_version, links)
            run(pip, "pip install", out, log)
            copy_shim(env)
            run([str(venv_python(env)), str(env / "shim" / "server.py"), "--adapter", recipe.adapter, "--check"],
                f"importing {name}'s packages", out, log)
    except BaseException:
        shutil.rmtree(env, ignore_errors=True)
        raise
    manifest = {"format": FORMAT, "verifier": name, "packages": list(recipe.packages), "adapter": recipe.adapter,
                "torch": torch_version or recipe.torch_pin, "borrowed": [str(p) for p in links]}
    write_atomically(env / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return env


def run(command: list[str], what: str, out, log: Path) -> None:  # type: ignore[no-untyped-def]
    """Run one install step, its output appended to the log; a failure is one line naming the step and the log."""
    out.write(f"$ {' '.join(command)}\n")
    out.flush()
    if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ | OFFLINE).returncode:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise NoiseSearchError(f"{what} failed ({tail[0].strip()}); see {log}")


def borrow(env: Path, torch_version: str, links: list[Path]) -> None:
    """Make the running torch (and what it requires) importable in the environment and pin it for pip. Asked to
    replace a borrowed distribution, pip removes at most a link, never what it points to: it resolves links before
    it decides that a file lies inside the environment."""
    folder = env / HOST_PACKAGES
    folder.mkdir()
    for path in links:
        (folder / path.name).symlink_to(path)
    purelib = subprocess.run([str(venv_python(env)), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "noisesearch_host_packages.pth").write_text(f"{folder}\n")
    (env / "constraints.txt").write_text(f"torch=={torch_version}\n")


def copy_shim(env: Path) -> None:
    """The shim, the wire format (unchanged) and the adapters, into the environment's shim/ folder."""
    shim = env / "shim"
    shutil.copytree(ADAPTERS, shim / "adapters", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(SHIM, shim / "server.py")
    shutil.copy2(verifier_protocol.__file__, shim / "verifier_protocol.py")


def parse_weights(recipe: Recipe, pairs: list[str]) -> dict[str, str]:
    """`--weights name=path ...` as absolute paths, checked: every weight the adapter needs, each path present."""
    weights = {}
    for pair in pairs:
        key, sep, path = pair.partition("=")
        if not sep or key not in recipe.weights:
            raise NoiseSearchError(f"--weights takes NAME=PATH with NAME one of {', '.join(recipe.weights)} for "
                                   f"verifier {recipe.name}, got {pair!r}")
        weights[key] = str(Path(path).expanduser().absolute())
    missing = [f"{key} ({what})" for key, what in recipe.weights.items() if key not in weights]
    if missing:
        raise NoiseSearchError(f"verifier {recipe.name} needs --weights {' '.join(f'{k}=PATH' for k in recipe.weights)}"
                               f"; missing: {'; '.join(missing)}")
    absent = [f"{key}={path}" for key, path in weights.items() if not Path(path).exists()]
    if absent:
        raise NoiseSearchError(f"weights path does not exist: {', '.join(absent)} (adapters load local files only)")
    return weights


def shim_command(name: str, weights: list[str], host: str = "127.0.0.1", port: int = 0, device: str | None = None,
                 cache_dir: str | Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The command and environment variables that serve verifier `name` from its environment, checked first."""
    recipe = get_recipe(name)
    env = cache_root(cache_dir) / name
    if not (env / MANIFEST).is_file():
        raise NoiseSearchError(f"verifier {name} has no environment at {env}: run `noisesearch verifier install "
                               f"{name}` first")
    manifest = read_json_file(env / MANIFEST, "verifier environment manifest")
    gone = [path for path in manifest.get("borrowed", []) if not Path(path).exists()]
    if gone:
        raise NoiseSearchError(f"verifier {name}'s environment borrows torch files that are gone ({gone[0]}): "
                               f"reinstall it with `noisesearch verifier install {name} --force`")
    command = [str(venv_python(env)), str(env / "shim" / "server.py"), "--adapter", recipe.adapter,
               "--weights", json.dumps(parse_weights(recipe, weights)), "--host", host, "--port", str(port)]
    return command + (["--device", device] if device else []), os.environ | OFFLINE


def serve(name: str, weights: list[str], host: str = "127.0.0.1", port: int = 0, device: str | None = None,
          cache_dir: str | Path | None = None) -> None:
    """Replace this process with the shim serving verifier `name` (signals then reach the shim directly)."""
    command, environ = shim_command(name, weights, host, port, device, cache_dir)
    os.execve(command[0], command, environ)
