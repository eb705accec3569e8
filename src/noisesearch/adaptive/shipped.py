"""Search schedules shipped with the package: calibrated for the embedded MNIST EDM model's packaged weights and
its default sampler (heun, 18 steps), one per reward column of the paper's Table 1, so that
`adaptive_eps_greedy` runs right after install. Each JSON's info holds the `noisesearch calibrate` command
that made it."""

from __future__ import annotations

from pathlib import Path

from noisesearch.errors import NoiseSearchError

DIRECTORY = Path(__file__).parent / "schedules"
SHIPPED = {  # (backend, reward, guidance): file in DIRECTORY
    ("embedded", "brightness", 1.0): "embedded_brightness.json",
    ("embedded", "compressibility", 1.0): "embedded_compressibility.json",
    ("embedded", "classifier", 1.0): "embedded_classifier.json",
    ("embedded", "classifier", 0.0): "embedded_classifier_w0.json",
}


def shipped_names() -> str:
    return "; ".join(f"{backend} backend, {reward}, guidance {guidance:g}" for backend, reward, guidance in SHIPPED)


def shipped_schedule(backend: str, own_model: bool, reward: object, guidance: float) -> Path:
    """The shipped schedule for a run of `reward` (a registered name) at `guidance` on `backend`'s packaged
    model (not `own_model`: a --model path, a denoiser or a pipeline of the user's), or a one-line
    NoiseSearchError that says how to make one."""
    name = None if own_model or not isinstance(reward, str) else SHIPPED.get((backend, reward, float(guidance)))
    if name is None or not (DIRECTORY / name).is_file():
        raise NoiseSearchError("adaptive_eps_greedy needs a search schedule for this model and reward: make one with "
                               "`noisesearch calibrate` and pass --search-schedule FILE (shipped: "
                               f"{shipped_names()})")
    return DIRECTORY / name
