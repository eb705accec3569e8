"""search(pipeline=..., reward=...): a loaded diffusers pipeline of any family and a reward object."""

import pytest
import torch

pytest.importorskip("diffusers")

from tiny_pipeline import save_tiny_pipeline, tiny_flux_pipeline, tiny_sd3_pipeline, tiny_sdxl_pipeline  # noqa: E402

from noisesearch import NoiseSearchError, get_algorithm, search  # noqa: E402
from noisesearch.backends.diffusers_backend import load_pipeline  # noqa: E402
from noisesearch.backends.diffusers_families import FAMILY_BACKENDS, make_denoiser  # noqa: E402

BUILDERS = {"sd": lambda directory: load_pipeline(save_tiny_pipeline(directory)), "sdxl": tiny_sdxl_pipeline,
            "sd3": tiny_sd3_pipeline, "flux": tiny_flux_pipeline}
PROMPTS = ["a cat", "a dog"]


class Redness:
    """A reward object as a notebook user writes one: mean red minus mean green."""

    name = "redness"

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return images[:, 0].mean((1, 2)) - images[:, 1].mean((1, 2))


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def built(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    return request.param, BUILDERS[request.param](directory), directory


def test_search_takes_a_loaded_pipeline_and_a_reward_object(built):
    family, pipe, _ = built
    result = search(pipeline=pipe, prompts=PROMPTS, reward=Redness(), algorithm="eps_greedy", N=2, K=2, steps=3,
                    guidance=2.0)
    denoiser = make_denoiser(pipe, PROMPTS, 2.0)
    sampler = denoiser.default_sampler("heun" if family in ("sd", "sdxl") else "flow_euler", 3)
    expected = get_algorithm("eps_greedy", N=2, K=2).nfe_formula(sampler) * denoiser.nfe_per_call
    assert result.nfe.tolist() == [expected, expected]
    assert result.config["backend"] == FAMILY_BACKENDS[family] and result.config["reward"] == "redness"
    assert result.config["sampler"] == sampler.to_dict()
    assert torch.allclose(result.rewards, Redness()(result.images, torch.arange(2)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_a_pipeline_object_and_its_saved_directory_give_the_same_images(family, tmp_path):
    pipe = BUILDERS[family](tmp_path)
    pipe.save_pretrained(tmp_path / "pipe")
    args = {"prompts": PROMPTS, "reward": "brightness", "algorithm": "best_of_n", "N": 2, "steps": 3}
    from_object = search(pipeline=pipe, **args)
    from_path = search(backend=family, model=str(tmp_path / "pipe"), **args)
    assert torch.equal(from_object.images, from_path.images)
    assert from_object.config["guidance"] == from_path.config["guidance"] == {"sdxl": 5.0, "sd3": 7.0}[family]


def test_a_path_of_another_family_names_the_backend_to_use(tmp_path):
    pipe = tiny_sd3_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "pipe")
    with pytest.raises(NoiseSearchError, match="use --backend sd3") as err:
        search(backend="diffusers", model=str(tmp_path / "pipe"), prompts=PROMPTS, reward="brightness")
    assert "\n" not in str(err.value)


def test_mistakes_with_pipelines_and_reward_objects_are_one_line_errors(built):
    family, pipe, _ = built
    other = "sd3" if family != "sd3" else "flux"
    for kwargs, message in (({"backend": other}, "leave backend out"), ({"reward": 3}, "reward must be"),
                            ({"reward": Redness(), "reward_args": {"x": 1}}, "already built")):
        with pytest.raises(NoiseSearchError, match=message) as err:
            search(**{"pipeline": pipe, "prompts": PROMPTS, "reward": "brightness", **kwargs})
        assert "\n" not in str(err.value)
