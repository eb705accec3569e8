"""The diffusers backend on a tiny random Stable Diffusion pipeline saved to and loaded from disk."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("diffusers")

from test_contract import CASES, for_sampler  # noqa: E402
from tiny_pipeline import save_tiny_pipeline  # noqa: E402

from noisesearch import NoiseSearchError, Problem, get_algorithm, get_reward  # noqa: E402
from noisesearch.backends.diffusers_backend import DiffusersDenoiser, load_pipeline  # noqa: E402
from noisesearch.sampling import Churn  # noqa: E402

PROMPTS = ["a red cube", "a cat", "a dog on a hill"]


@pytest.fixture(scope="module", params=["epsilon", "v_prediction"])
def pipe(request, tmp_path_factory):
    return load_pipeline(save_tiny_pipeline(tmp_path_factory.mktemp(request.param), request.param))


def reference_scheduler(pipe, noise, prompt, steps, solver="heun"):
    """The pipeline's own Karras-Heun (or Karras-Euler) scheduler, driven as its __call__ does (guidance 1)."""
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    cls = {"heun": HeunDiscreteScheduler, "euler": EulerDiscreteScheduler}[solver]
    sched = cls.from_config(pipe.scheduler.config, use_karras_sigmas=True, timestep_spacing="linspace")
    sched.set_timesteps(steps)
    emb = DiffusersDenoiser(pipe, [prompt], guidance_scale=1.0).conditioning["encoder_hidden_states"]
    latents = noise * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            out = pipe.unet(sched.scale_model_input(latents, t), t, encoder_hidden_states=emb).sample
            latents = sched.step(out, t, latents).prev_sample
    return latents


@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_deterministic_sampler_matches_the_pipelines_scheduler(pipe, solver):
    steps = 6
    denoiser = DiffusersDenoiser(pipe, [PROMPTS[0]], guidance_scale=1.0)
    sampler = replace(denoiser.default_sampler(solver, steps), noise=Churn(S_churn=0.0))
    assert sampler.searchable_steps() == []
    noise = torch.randn(1, *denoiser.image_shape, generator=torch.Generator().manual_seed(0))
    ours = Problem(denoiser, get_reward("brightness"), torch.tensor([0]), [0], sampler)
    x = ours.initial_state(noise[:, None])
    for i in range(steps):
        x = ours.step(x, i, None).x_next
    ref = reference_scheduler(pipe, noise, PROMPTS[0], steps, solver)
    assert torch.allclose(x[:, 0], ref, rtol=1e-3, atol=1e-4), (x[:, 0] - ref).abs().max()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_algorithm_runs_on_the_pipeline_with_exact_nfe_and_reproducibly(pipe, case):
    name, params = CASES[case]
    denoiser = DiffusersDenoiser(pipe, PROMPTS, guidance_scale=4.0)
    sampler = denoiser.default_sampler("heun", 5)
    params = for_sampler(params, sampler)
    labels, seeds = torch.tensor([0, 1, 2, 1]), [5, 6, 7, 8]

    def run(cond, sample_seeds):
        problem = Problem(denoiser, get_reward("brightness"), cond, sample_seeds, sampler, max_batch=8,
                          batch_invariant=True)
        algo = get_algorithm(name, **params)
        return algo, problem, algo.run(problem)

    algo, problem, result = run(labels, seeds)
    assert result.images.shape == (4, 3, 16, 16)
    assert torch.equal(result.nfe, algo.expected_calls(sampler, result) * 2)  # guidance: 2 NFE per call
    assert torch.equal(result.rewards, problem.score_images(result.images[:, None])[:, 0])
    assert torch.equal(run(labels, seeds)[2].images, result.images)
    first = 0 if algo.learns_across_conditions else 2  # a learner: the conditions up to 2
    part = run(labels[first:3], seeds[first:3])[2]
    assert torch.equal(part.images[-1], result.images[2])


def test_guidance_one_and_zero_cost_one_nfe_per_call(pipe):
    for w in (0.0, 1.0):
        assert DiffusersDenoiser(pipe, PROMPTS, guidance_scale=w).nfe_per_call == 1


def test_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(NoiseSearchError, match="cannot load diffusers model") as err:
        load_pipeline(tmp_path / "nothing-here")
    assert "\n" not in str(err.value)


def test_cli_searches_a_local_pipeline_against_clip(pipe, tmp_path):
    import json

    from tiny_pipeline import save_tiny_clip

    from noisesearch.cli import main

    pipe_dir = tmp_path / "pipe"
    pipe.save_pretrained(pipe_dir)
    clip_dir = save_tiny_clip(tmp_path)
    out = tmp_path / "out"
    code = main(["sample", "--backend", "diffusers", "--model", str(pipe_dir), "--prompt", "a cat", "--prompt",
                 "a dog", "--reward", "clip", "--reward-arg", f"model={clip_dir}", "--algorithm", "eps_greedy",
                 "--N", "2", "--K", "2", "--steps", "4", "--guidance", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    record = json.loads((out / "result.json").read_text())
    sampler = DiffusersDenoiser(pipe, ["a cat"]).default_sampler("heun", 4)  # the model's sigma range
    expected = get_algorithm("eps_greedy", N=2, K=2).nfe_formula(sampler) * 2
    assert [im["prompt"] for im in record["images"]] == ["a cat", "a dog"]
    assert [im["nfe"] for im in record["images"]] == [expected, expected]
    assert record["config"]["backend"] == "diffusers" and record["mean_evaluator"] is None
    assert (out / "images" / "000.png").exists() and (out / "grid.png").exists()


def test_half_precision_pipeline_runs_and_counts_the_same_nfe(pipe, tmp_path):
    from noisesearch import search

    pipe.save_pretrained(tmp_path / "pipe")
    result = search(algorithm="best_of_n", reward="brightness", backend="diffusers", model=str(tmp_path / "pipe"),
                    prompts=["a cat"], steps=4, dtype="bfloat16", guidance=2.0, N=2)
    assert result.images.dtype == torch.float32 and torch.isfinite(result.images).all()
    assert result.nfe.tolist() == [2 * 2 * 7]  # N trajectories of 2T - 1 calls, 2 NFE per call with guidance
