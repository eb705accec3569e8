"""bfloat16 where the hardware lacks it warns once, naming float32; the detection reads the CPU's flags."""

from __future__ import annotations

import warnings

import pytest

from noisesearch import precision
from noisesearch.backends import load_backend_denoiser
from noisesearch.errors import NoiseSearchWarning

XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(XEON, False), (EPYC, True), (GRAVITON, True), ("", None)])
def test_native_bf16_reads_the_cpu_flags(cpuinfo, native, tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "cpuinfo")
    assert precision.native_bf16("cpu") is native
    assert precision.native_bf16("mps") is None


def test_bfloat16_on_a_cpu_without_it_warns_once_and_names_float32(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(XEON)
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "cpuinfo")
    precision.warn_emulated_bf16.cache_clear()
    with pytest.warns(NoiseSearchWarning, match=r"^--dtype bfloat16: this CPU has no AVX512-BF16.*use --dtype float32"):
        load_backend_denoiser("embedded", dtype="bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_backend_denoiser("embedded", dtype="bfloat16")  # once per process
        load_backend_denoiser("embedded")  # and never for float32
    precision.warn_emulated_bf16.cache_clear()
    (tmp_path / "cpuinfo").write_text(EPYC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_backend_denoiser("embedded", dtype="bfloat16")
    precision.warn_emulated_bf16.cache_clear()
