"""SDXL, SD3 and FLUX on tiny random pipelines built here: the deterministic path (no injected noise) equals
the pipeline's own sampling loop, and every algorithm passes the contract checks on each."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("diffusers")

from test_contract import CASES, for_sampler  # noqa: E402
from tiny_pipeline import tiny_flux_pipeline, tiny_sd3_pipeline, tiny_sdxl_pipeline  # noqa: E402

from noisesearch import NoiseSearchError, Problem, get_algorithm, get_reward  # noqa: E402
from noisesearch.backends.diffusers_families import make_denoiser, pipeline_family  # noqa: E402
from noisesearch.sampling import Churn  # noqa: E402
from noisesearch.testing import Contract  # noqa: E402

PROMPTS = ["a red cube", "a cat", "a dog on a hill"]
BUILDERS = {"sdxl": tiny_sdxl_pipeline, "sd3": tiny_sd3_pipeline, "flux": tiny_flux_pipeline}
TOLERANCE = 2e-4  # max abs difference of final latents (measured: SDXL 7e-6, SD3 4e-5, FLUX 9e-5): float32, t_max


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def pipe(request, tmp_path_factory):
    pipe = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def our_deterministic_path(denoiser, noise, steps):
    solver = "euler" if denoiser.family == "sdxl" else "flow_euler"
    sampler = replace(denoiser.default_sampler(solver, steps), noise=Churn(S_churn=0.0))
    assert sampler.searchable_steps() == []
    problem = Problem(denoiser, get_reward("brightness"), torch.tensor([0]), [0], sampler)
    x = problem.initial_state(noise[:, None])
    for i in range(steps):
        x = problem.step(x, i, None).x_next
    return x[:, 0]


def pipeline_path(pipe, denoiser, noise, steps):
    """The pipeline's own loop from the same initial noise, to latents (SDXL: its EulerDiscreteScheduler with
    Karras sigmas over the training range, as our Karras schedule; SD3/FLUX: FlowMatchEulerDiscreteScheduler
    as the pipelines configure it)."""
    from diffusers import EulerDiscreteScheduler

    size = noise.shape[-1] * denoiser.vae_scale
    args = {"num_inference_steps": steps, "height": size, "width": size, "output_type": "latent",
            "guidance_scale": denoiser.guidance}
    cond = {k: v[:1] for k, v in denoiser.conditioning.items()}
    with torch.no_grad():
        if denoiser.family == "sdxl":
            pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                                                timestep_spacing="linspace")
            return pipe(prompt=PROMPTS[0], latents=noise, **args).images
        embeds = {"prompt_embeds": cond["encoder_hidden_states"], "pooled_prompt_embeds": cond["pooled_projections"]}
        if denoiser.family == "sd3":
            return pipe(latents=noise, **embeds, **args).images
        packed = pipe._pack_latents(noise, *noise.shape)
        return pipe._unpack_latents(pipe(latents=packed, **embeds, **args).images, size, size, denoiser.vae_scale)


def test_deterministic_path_equals_the_pipelines_own_sampling(pipe):
    steps = 5
    guidance = 3.5 if pipeline_family(pipe) == "flux" else 1.0  # FLUX: embedded guidance, still 1 call
    denoiser = make_denoiser(pipe, [PROMPTS[0]], guidance)
    noise = torch.randn(1, *denoiser.image_shape, generator=torch.Generator().manual_seed(0))
    ours = our_deterministic_path(denoiser, noise, steps)
    ref = pipeline_path(pipe, denoiser, noise, steps)
    diff = float((ours - ref).abs().max())
    print(f"{denoiser.family}: max abs difference {diff:.2e} (latents up to {float(ref.abs().max()):.2f})")
    assert diff < TOLERANCE


def test_flux_without_guidance_embedding_matches_its_pipeline_and_takes_cfg(tmp_path):
    pipe = tiny_flux_pipeline(tmp_path, guidance_embeds=False)
    pipe.set_progress_bar_config(disable=True)
    denoiser = make_denoiser(pipe, [PROMPTS[0]], 1.0)
    assert not denoiser.embedded_guidance and make_denoiser(pipe, PROMPTS, 4.0).nfe_per_call == 2
    noise = torch.randn(1, *denoiser.image_shape, generator=torch.Generator().manual_seed(1))
    diff = float((our_deterministic_path(denoiser, noise, 4) - pipeline_path(pipe, denoiser, noise, 4)).abs().max())
    assert diff < TOLERANCE


def test_flow_samplers_take_the_pipeline_schedulers_times(pipe):
    if pipeline_family(pipe) == "sdxl":
        pytest.skip("SDXL is not a flow model")
    denoiser = make_denoiser(pipe, PROMPTS)
    sampler = denoiser.default_sampler("flow_euler", 7)
    reference = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    if denoiser.family == "flux":
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        mu = calculate_shift(denoiser.seq_len(), 256, 4096, 0.5, 1.15)
        reference.set_timesteps(sigmas=[1 - i / 7 for i in range(7)], mu=mu)
    else:
        reference.set_timesteps(7)
    ours = sampler.schedule.times()
    assert ours[0] == 0.99999 and reference.sigmas[0] == 1.0
    assert torch.allclose(ours[1:].float(), reference.sigmas[1:-1], rtol=0, atol=1e-6)


def test_guidance_costs(pipe):
    family = pipeline_family(pipe)
    assert make_denoiser(pipe, PROMPTS, 1.0).nfe_per_call == 1
    assert make_denoiser(pipe, PROMPTS, 4.0).nfe_per_call == (1 if family == "flux" else 2)


def test_unsupported_pipelines_are_a_one_line_error():
    class FakePipeline:
        transformer = None

    with pytest.raises(NoiseSearchError, match="unsupported diffusers pipeline FakePipeline") as err:
        pipeline_family(FakePipeline())
    assert "\n" not in str(err.value)


_CONTRACTS: dict[tuple[str, str], Contract] = {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_algorithm_passes_the_contract_on_the_pipeline(pipe, case):
    family = pipeline_family(pipe)
    denoiser = make_denoiser(pipe, PROMPTS, 2.0)
    sampler = denoiser.default_sampler("heun" if family == "sdxl" else "flow_euler", 3)
    name, params = CASES[case]
    contract = Contract(get_algorithm(name, **for_sampler(params, sampler)), sampler, denoiser,
                        labels=[0, 1, 2, 1], seeds=[5, 6, 7, 8])
    contract.check_all()
    assert contract.reference[1].images.shape == (4, 3, 16, 16)
