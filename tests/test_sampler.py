"""The samplers against line-by-line transcriptions of EDM's edm_sampler and k-diffusion's sample_euler
with given noises."""

import torch

from noisesearch import DenoiserBase, Problem, get_algorithm, get_reward, make_sampler

SD = 0.5


def gaussian_denoiser(x, sigma):
    """Exact denoiser for data ~ N(0, SD²): E[x0 | x] = x·SD² / (sigma² + SD²)."""
    return x * SD**2 / (sigma**2 + SD**2)


def reference_edm_sampler(latents, noises, steps=18, S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.003,
                          sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """EDM (Karras et al. 2022) Algorithm 2, as in NVlabs/edm generate.py, with explicit noises (the
    time steps computed here as there, not taken from the sampler under test)."""
    step_indices = torch.arange(steps, dtype=torch.float64)
    t_steps = (sigma_max ** (1 / rho) + step_indices / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
               ) ** rho
    t_steps = torch.cat([t_steps, torch.zeros_like(t_steps[:1])]).float()
    x_next = latents * t_steps[0]
    n = steps
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:], strict=True)):
        x_cur = x_next
        gamma = min(S_churn / n, 2**0.5 - 1) if S_min <= t_cur <= S_max else 0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur + (t_hat**2 - t_cur**2).sqrt() * S_noise * noises[i]
        denoised = gaussian_denoiser(x_hat, t_hat)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < n - 1:
            denoised = gaussian_denoiser(x_next, t_next)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def run_ours(latents, noises, sampler):
    x = sampler.initial_state(latents)
    calls = 0

    def denoise(x, s):
        nonlocal calls
        calls += 1
        return gaussian_denoiser(x, s)

    for i in range(sampler.steps):
        x_hat = sampler.propose(x, i, noises[i])
        x = sampler.advance(denoise, x_hat, denoise(x_hat, sampler.sigma_hats[i]), i)[0]
    return x, calls


def test_matches_reference_edm_sampler():
    sampler = make_sampler("heun", 18)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 1, 8, 8, generator=g)
    noises = torch.randn(sampler.steps, 4, 1, 8, 8, generator=g)
    ours, calls = run_ours(latents, noises, sampler)
    ref = reference_edm_sampler(latents, noises)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert calls == 35


def test_noise_at_gamma_zero_steps_has_no_effect():
    sampler = make_sampler("heun", 18)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 1, 8, 8, generator=g)
    noises = torch.randn(sampler.steps, 2, 1, 8, 8, generator=g)
    changed = noises.clone()
    for i in range(sampler.steps):
        if i not in sampler.searchable_steps():
            changed[i] = torch.randn(2, 1, 8, 8, generator=g)
    assert torch.equal(run_ours(latents, noises, sampler)[0], run_ours(latents, changed, sampler)[0])
    i = sampler.searchable_steps()[3]
    changed[i] += 1.0
    assert not torch.equal(run_ours(latents, noises, sampler)[0], run_ours(latents, changed, sampler)[0])


def test_samples_of_exact_gaussian_denoiser_converge_to_the_data_scale():
    """With the exact denoiser, fine discretisation and S_noise = 1 the sampler draws N(0, SD²)."""
    sampler = make_sampler("heun", 64, S_noise=1.0)
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(20000, 1, 1, 1, generator=g)
    noises = torch.randn(sampler.steps, 20000, 1, 1, 1, generator=g)
    x, _ = run_ours(latents, noises, sampler)
    assert abs(x.std().item() - SD) < 0.015


def reference_k_diffusion_euler(x, sigmas, denoise):
    """k-diffusion's sample_euler with s_churn = 0, by hand: d = (x − D(x, σ_i)) / σ_i, then
    x_{i+1} = x_i + (σ_{i+1} − σ_i)·d."""
    for i in range(len(sigmas) - 1):
        d = (x - denoise(x, sigmas[i])) / sigmas[i]
        x = x + (sigmas[i + 1] - sigmas[i]) * d
    return x


def test_euler_without_churn_is_k_diffusion_sample_euler():
    sampler = make_sampler("euler", 18, S_churn=0)
    assert sampler.searchable_steps() == []
    assert torch.equal(sampler.sigma_hats, sampler.sigmas[:-1])  # no churn: the denoiser sees sigma_i
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(4, 1, 8, 8, generator=g)
    ours, calls = run_ours(latents, [None] * sampler.steps, sampler)
    ref = reference_k_diffusion_euler(latents * sampler.sigmas[0], sampler.sigmas, gaussian_denoiser)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert calls == 18  # one call per step, the last one included
    # and by hand, one step: x_1 = x_0 + (sigma_1 − sigma_0)·(x_0 − D(x_0)) / sigma_0
    x0, s0, s1 = latents * sampler.sigmas[0], sampler.sigmas[0], sampler.sigmas[1]
    x1 = sampler.advance(gaussian_denoiser, sampler.propose(x0, 0, None), gaussian_denoiser(x0, s0), 0)[0]
    assert torch.allclose(x1, x0 + (s1 - s0) * (x0 - x0 * SD**2 / (s0**2 + SD**2)) / s0, atol=1e-6)


def test_euler_with_churn_is_k_diffusion_sample_euler_with_s_churn():
    """k-diffusion's sample_euler with churn: sigma_hat = sigma_i·(1 + gamma_i), x += sqrt(sigma_hat² −
    sigma_i²)·s_noise·eps, then the Euler step from sigma_hat to sigma_{i+1}."""
    sampler = make_sampler("euler", 10)
    sigmas = sampler.sigmas
    g = torch.Generator().manual_seed(4)
    latents = torch.randn(3, 1, 4, 4, generator=g)
    noises = torch.randn(sampler.steps, 3, 1, 4, 4, generator=g)
    x = latents * sigmas[0]
    for i in range(sampler.steps):
        gamma = min(40.0 / 10, 2**0.5 - 1) if 0.05 <= sigmas[i] <= 50.0 else 0.0
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0:
            x = x + noises[i] * 1.003 * (sigma_hat**2 - sigmas[i] ** 2) ** 0.5
        d = (x - gaussian_denoiser(x, sigma_hat)) / sigma_hat
        x = x + d * (sigmas[i + 1] - sigma_hat)
    ours, calls = run_ours(latents, noises, sampler)
    assert torch.allclose(ours, x, atol=1e-5)
    assert calls == 10


class GaussianDenoiser(DenoiserBase):
    image_shape = (1, 4, 4)

    def __call__(self, x, sigma, cond):
        return gaussian_denoiser(x, sigma.reshape(-1, 1, 1, 1))


def test_naive_sampling_with_euler_costs_one_nfe_per_step():
    problem = Problem(GaussianDenoiser(), get_reward("brightness"), torch.zeros(3, dtype=torch.long), [0, 1, 2],
                      make_sampler("euler", 18))
    result = get_algorithm("naive").run(problem)
    assert result.nfe.tolist() == [18, 18, 18]
    assert problem.nfe.tolist() == [18, 18, 18]
    heun = Problem(GaussianDenoiser(), get_reward("brightness"), torch.zeros(3, dtype=torch.long), [0, 1, 2],
                   make_sampler("heun", 18))
    assert get_algorithm("naive").run(heun).nfe.tolist() == [35, 35, 35]
