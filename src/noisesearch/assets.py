"""Locate and load the weights shipped inside the package (no network, no ../shared)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from noisesearch.errors import NoiseSearchError


def assets_dir() -> Path:
    """Directory of the packaged safetensors weights and model cards."""
    return Path(str(resources.files("noisesearch") / "models" / "assets"))


def weights_path(name: str, directory: Path | str | None = None) -> Path:
    return Path(directory or assets_dir()) / f"{name}.safetensors"


def card_path(name: str, directory: Path | str | None = None) -> Path:
    return Path(directory or assets_dir()) / f"{name}.json"


def load_weights(name: str, directory: Path | str | None = None) -> dict[str, torch.Tensor]:
    """State dict from `<directory>/<name>.safetensors` (default: the packaged assets); a missing, unreadable or
    corrupt file is a one-line NoiseSearchError naming it."""
    path = weights_path(name, directory)
    if not path.exists():
        raise NoiseSearchError(f"weights {path} not found: train them (see training/) or pass a directory holding them")
    try:
        return load_file(str(path))
    except OSError as err:
        raise NoiseSearchError(f"cannot read weights {path} ({err.strerror or err})") from None
    except (SafetensorError, ValueError, TypeError, RuntimeError) as err:
        raise NoiseSearchError(f"weights {path} are not a readable safetensors file ({first_line(err)})") from None


def load_card(name: str, directory: Path | str | None = None) -> dict:
    """JSON model card `<directory>/<name>.json`, or {} if there is none; one that is unreadable, not JSON or
    not a JSON object is a one-line NoiseSearchError naming it."""
    path = card_path(name, directory)
    if not path.exists():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise NoiseSearchError(f"cannot read model card {path} ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise NoiseSearchError(f"model card {path} is not UTF-8 text: it must be a JSON object") from None
    except json.JSONDecodeError as err:
        raise NoiseSearchError(f"model card {path} is not valid JSON ({err.msg} at line {err.lineno}, column "
                               f"{err.colno})") from None
    if not isinstance(card, dict):
        raise NoiseSearchError(f"model card {path} must be a JSON object, got a JSON {json_kind(card)}")
    return card


def json_kind(value: object) -> str:
    """'list', 'string', 'number', ... : the JSON name of a parsed value's type."""
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


PICKLE_SUFFIXES = (".pkl", ".pickle")  # plain pickles: loading one always runs the code it names


def untrusted(path: Path, why: str) -> NoiseSearchError:
    """The refusal of a user's network file that can run code when loaded, unless trusted."""
    return NoiseSearchError(f"{path} {why}, and loading it can run arbitrary code: pass --trust-model-code "
                            "(trust_model_code=True) only if you trust the file and its source")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def state_mismatch(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> str:
    """What keeps `weights` from loading into a module whose state dict is `expected` ('' if nothing)."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if shapes:
        k = shapes[0]
        return (f"tensor {k} has shape {list(weights[k].shape)}, the architecture needs {list(expected[k].shape)}"
                + (f" (and {len(shapes) - 1} more tensors differ)" if len(shapes) > 1 else ""))
    for keys, what in ((missing, "is missing"), (unexpected, "is not in the architecture")):
        if keys:
            return f"tensor {keys[0]} {what}" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else "")
    return ""


def load_fitting(model: torch.nn.Module, name: str, directory: Path | str | None, what: str) -> torch.nn.Module:
    """`model` with the weights `<directory>/<name>.safetensors` loaded into it; weights that do not fit it are a
    one-line NoiseSearchError naming the file and `what` they should fit."""
    state = load_weights(name, directory)
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise NoiseSearchError(f"weights {weights_path(name, directory)} do not fit {what}: {mismatch}")
    model.load_state_dict(state)
    return model

