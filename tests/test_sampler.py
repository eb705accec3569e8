"""The sampler against a line-by-line transcription of EDM's edm_sampler with given noises."""

import torch

from noisesearch import EDMSampler, EDMSchedule

SD = 0.5


def gaussian_denoiser(x, sigma):
    """Exact denoiser for data ~ N(0, SD²): E[x0 | x] = x·SD² / (sigma² + SD²)."""
    return x * SD**2 / (sigma**2 + SD**2)


def reference_edm_sampler(latents, noises, sched: EDMSchedule):
    """EDM (Karras et al. 2022) Algorithm 2, as in NVlabs/edm generate.py, with explicit noises."""
    t_steps = sched.sigmas()
    x_next = latents * t_steps[0]
    n = sched.steps
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:], strict=True)):
        x_cur = x_next
        gamma = min(sched.S_churn / n, 2**0.5 - 1) if sched.S_min <= t_cur <= sched.S_max else 0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur + (t_hat**2 - t_cur**2).sqrt() * sched.S_noise * noises[i]
        denoised = gaussian_denoiser(x_hat, t_hat)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < n - 1:
            denoised = gaussian_denoiser(x_next, t_next)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def run_ours(latents, noises, sched):
    sampler = EDMSampler(sched)
    x = sampler.initial_state(latents)
    calls = 0

    def denoise(x, s):
        nonlocal calls
        calls += 1
        return gaussian_denoiser(x, s)

    for i in range(sched.steps):
        x_hat = sampler.churn(x, i, noises[i])
        x = sampler.heun_update(denoise, x_hat, denoise(x_hat, sampler.sigma_hats[i]), i)[0]
    return x, calls


def test_matches_reference_edm_sampler():
    sched = EDMSchedule()
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 1, 8, 8, generator=g)
    noises = torch.randn(sched.steps, 4, 1, 8, 8, generator=g)
    ours, calls = run_ours(latents, noises, sched)
    ref = reference_edm_sampler(latents, noises, sched)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert calls == 35


def test_noise_at_gamma_zero_steps_has_no_effect():
    sched = EDMSchedule()
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 1, 8, 8, generator=g)
    noises = torch.randn(sched.steps, 2, 1, 8, 8, generator=g)
    changed = noises.clone()
    for i in range(sched.steps):
        if i not in sched.searchable_steps():
            changed[i] = torch.randn(2, 1, 8, 8, generator=g)
    assert torch.equal(run_ours(latents, noises, sched)[0], run_ours(latents, changed, sched)[0])
    i = sched.searchable_steps()[3]
    changed[i] += 1.0
    assert not torch.equal(run_ours(latents, noises, sched)[0], run_ours(latents, changed, sched)[0])


def test_samples_of_exact_gaussian_denoiser_converge_to_the_data_scale():
    """With the exact denoiser, fine discretisation and S_noise = 1 the sampler draws N(0, SD²)."""
    sched = EDMSchedule(steps=64, S_noise=1.0)
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(20000, 1, 1, 1, generator=g)
    noises = torch.randn(sched.steps, 20000, 1, 1, 1, generator=g)
    x, _ = run_ours(latents, noises, sched)
    assert abs(x.std().item() - SD) < 0.015
