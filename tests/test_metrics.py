"""Population metrics: the packaged MNIST reference, the Inception-v3 extractor's file formats and call convention
(on a tiny TorchScript module scripted here), FID/KID/IS equal to torchmetrics' own classes, precision/recall
equal to a brute-force loop, the sample-count checks, and `sample --metrics`."""

import hashlib
import io
import json
import math
import pickle

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from noisesearch.cli import main
from noisesearch.errors import NoiseSearchError
from noisesearch.metrics import get_extractor, parse_metrics, plan_metrics, population_metrics
from noisesearch.metrics.inception import to_uint8
from noisesearch.metrics.population import min_samples
from noisesearch.metrics.reference import Reference, load_reference, references_dir, save_reference
from noisesearch.metrics.statistics import _Passthrough, bootstrap, centred_bootstrap

pytestmark = [pytest.mark.filterwarnings("ignore:.*will save all extracted features"),  # torchmetrics' own classes
              pytest.mark.filterwarnings("ignore:.*torch.jit.(save|script).* is deprecated"),  # the tiny detector
              pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0")]  # IS over one split


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2, d, dtype=torch.float64)
            + shift)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


# --- the packaged reference ------------------------------------------------------------------------------------

def test_the_shipped_mnist_reference_matches_its_card_and_loads():
    card = json.loads((references_dir() / "mnist_t10k.json").read_text())
    path = references_dir() / card["file"]
    assert hashlib.md5(path.read_bytes()).hexdigest() == card["md5"]
    assert card["data_md5"] == "9fb629c4189551a2d022fa330f9573f3" and "make_reference.py" in card["command"]
    ref = load_reference("mnist_t10k")
    assert ref.extractor == "mnist" and tuple(ref.features.shape) == (10000, 128) == (card["n"], card["d"])
    assert bool((ref.features >= 0).all())  # after the evaluator's ReLU


# --- the inception extractor -----------------------------------------------------------------------------------

class TinyDetector(torch.nn.Module):
    """NVlabs' detector's call convention: uint8 RGB in, pool features with return_features, else softmax
    probabilities (without the output bias when no_output_bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(-1, 1, 6 * 5).reshape(6, 5))
        self.bias = torch.nn.Parameter(torch.linspace(0, 2, 5))

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8 and img.shape[1] == 3
        x = img.float() / 255
        features = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)
        if return_features:
            return features
        logits = features @ self.weight
        return (logits if no_output_bias else logits + self.bias).softmax(dim=1)


class NoConvention(torch.nn.Module):
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.float().mean((2, 3))


class ScriptPickle:
    """Pickles as a call that rebuilds the TorchScript module from its bytes: a pickle holding a TorchScript
    module, as NVlabs ship their detector."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.buffer = io.BytesIO()
        torch.jit.save(module, self.buffer)

    def __reduce__(self):  # noqa: ANN204
        return torch.jit.load, (io.BytesIO(self.buffer.getvalue()),)


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inception")
    scripted = torch.jit.script(TinyDetector())
    torch.jit.save(scripted, str(folder / "tiny.pt"))
    (folder / "tiny.pkl").write_bytes(pickle.dumps(ScriptPickle(scripted)))
    torch.jit.save(torch.jit.script(NoConvention()), str(folder / "other.pt"))
    (folder / "broken.pt").write_bytes(b"not a torchscript archive")
    return folder, scripted


def test_images_become_uint8_rgb_as_edm_writes_them():
    images = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.5]).reshape(1, 1, 1, 5)
    out = to_uint8(images)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 1, 5)
    assert out[0, 0, 0].tolist() == [0, 64, 128, 255, 255] and torch.equal(out[:, 0], out[:, 2])


def test_inception_follows_the_detector_call_convention_from_a_torchscript_file_or_a_trusted_pickle(detector_files):
    folder, scripted = detector_files
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = scripted(to_uint8(images), return_features=True)
    for path, trust in ((folder / "tiny.pt", False), (folder / "tiny.pkl", True)):
        extractor = get_extractor("inception", path=str(path), trust_model_code=trust)
        assert extractor.dim == 6
        assert torch.equal(extractor.features(images), expected)
        probs = scripted(to_uint8(images), no_output_bias=True)
        assert torch.allclose(extractor.logits(images).softmax(dim=1), probs.double(), atol=1e-6)


@pytest.mark.parametrize("name, args, fragment", [
    ("missing.pt", {}, "not found: give a local inception-2015-12-05.pkl"),
    ("tiny.pkl", {}, "is a pickle, and loading it can run arbitrary code: pass --trust-model-code"),
    ("broken.pt", {}, "cannot read"),
    ("other.pt", {}, "does not take detector(uint8 images (B, 3, H, W), return_features=True)"),
])
def test_a_bad_inception_file_is_one_line(detector_files, name, args, fragment):
    with pytest.raises(NoiseSearchError) as err:
        get_extractor("inception", path=str(detector_files[0] / name), **args)
    assert fragment in str(err.value) and "\n" not in str(err.value)


# --- the statistics against torchmetrics and brute force -------------------------------------------------------

def test_fid_kid_and_is_equal_torchmetrics_own_classes():
    fake, real = gaussian(300, 8, 1, shift=0.3), gaussian(400, 8, 2)
    ref = Reference("synthetic", "test", real.float())
    ours = population_metrics(fake.float(), None, ref, ("fid", "kid"))

    fid = FrechetInceptionDistance(feature=_Passthrough(8))
    fid.update(real.float().double(), real=True)
    fid.update(fake.float().double(), real=False)
    assert close(ours["fid"], float(fid.compute()))

    kid = KernelInceptionDistance(feature=_Passthrough(8), subsets=3, subset_size=300)
    kid.update(real.float()[:300].double(), real=True)
    kid.update(fake.float().double(), real=False)
    mean, std = kid.compute()  # subsets of every row: permutations, so every subset gives the same value
    ours = population_metrics(fake.float(), None, Reference("synthetic", "test", real.float()[:300]), ("kid",))
    assert close(ours["kid_mean"], float(mean)) and ours["kid_std"] < 1e-9 and float(std) < 1e-9

    logits = gaussian(50, 5, 3).float() * 3
    score = InceptionScore(feature=_Passthrough(5), splits=10)
    score.update(logits)
    torch.manual_seed(0)  # its split order; ours is seeded with 0
    mean, std = score.compute()
    ours = population_metrics(torch.zeros(50, 2), logits, None, ("is",))
    assert close(ours["is_mean"], float(mean)) and close(ours["is_std"], float(std))
    p = logits.double().softmax(dim=1)  # and the definition, on one split: exp(E KL(p(y|x) || p(y)))
    one = InceptionScore(feature=_Passthrough(5), splits=1)
    one.update(logits)
    assert close(float(one.compute()[0]), float((p * (p.log() - p.mean(0).log())).sum(1).mean().exp()))


def brute_precision_recall(fake: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    def radius(points: torch.Tensor, i: int) -> float:
        return sorted(float((points[i] - points[j]).norm()) for j in range(len(points)) if j != i)[k - 1]

    def inside(x: torch.Tensor, centres: torch.Tensor) -> bool:
        return any(float((x - centres[j]).norm()) <= radius(centres, j) for j in range(len(centres)))

    return (sum(inside(x, real) for x in fake) / len(fake), sum(inside(y, fake) for y in real) / len(real))


def test_precision_recall_equal_a_brute_force_loop_and_the_known_cases():
    fake, real = gaussian(14, 3, 4, shift=0.5), gaussian(14, 3, 5)
    ours = population_metrics(fake, None, Reference("r", "test", real), ("pr",))
    assert (ours["precision"], ours["recall"]) == pytest.approx(brute_precision_recall(fake, real))
    assert 0 < ours["precision"] < 1 or 0 < ours["recall"] < 1  # a case that tells the balls apart
    same = population_metrics(real, None, Reference("r", "test", real), ("pr",))
    far = population_metrics(real + 1e3, None, Reference("r", "test", real), ("pr",))
    assert (same["precision"], same["recall"]) == (1.0, 1.0) and (far["precision"], far["recall"]) == (0.0, 0.0)


# --- names, sample counts and the plan ---------------------------------------------------------------------------

def test_metric_names_and_minimum_sample_counts_are_checked_in_one_line(tmp_path):
    assert parse_metrics("fid, kid,is,pr,fid") == ("fid", "kid", "is", "pr")
    with pytest.raises(NoiseSearchError, match=r"unknown metric 'fd': choose from fid, kid, is, pr"):
        parse_metrics("fid,fd")
    assert [min_samples(m, 128) for m in ("fid", "kid", "is", "pr")] == [129, 2, 10, 4]
    ref = Reference("r", "test", gaussian(40, 8, 6).float())
    with pytest.raises(NoiseSearchError, match="8 samples are too few for fid: FID needs more samples than the 8"):
        population_metrics(gaussian(8, 8, 7).float(), None, ref, ("fid",))
    with pytest.raises(NoiseSearchError, match="do not match the reference 'r'"):
        population_metrics(gaussian(20, 4, 7).float(), None, ref, ("kid",))
    with pytest.raises(NoiseSearchError, match="9 images are too few for is"):
        plan_metrics("is", 9, "mnist")
    save_reference(tmp_path / "other.safetensors", gaussian(20, 6, 8), "inception")
    with pytest.raises(NoiseSearchError, match="holds features of the 'inception' extractor, not 'mnist'"):
        plan_metrics("kid", 20, "mnist", tmp_path / "other.safetensors")
    with pytest.raises(NoiseSearchError, match="unknown feature extractor 'nope'"):
        plan_metrics("kid", 20, "nope")
    with pytest.raises(NoiseSearchError, match="population metrics need a feature extractor"):
        plan_metrics("kid", 20, None)  # a backend with no default (a real model): the user must name one


def test_sample_prints_and_records_the_metrics_and_checks_them_before_the_search(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--labels", "0,1,2,3,4,5,6,7,8,9", "--steps", "2", "--reward", "brightness",
                 "--evaluator", "none", "--metrics", "kid,is,pr", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MNIST-KID" in printed and "MNIST-IS" in printed and "MNIST-precision" in printed
    record = json.loads((out / "result.json").read_text())["metrics"]
    assert {k: record[k] for k in ("n", "extractor", "reference")} == {"n": 10, "extractor": "mnist",
                                                                        "reference": "mnist_t10k"}
    assert set(record) >= {"kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"}
    assert main(["sample", "--labels", "3,5", "--steps", "2", "--metrics", "fid", "--no-progress",
                 "--out", str(tmp_path / "few")]) == 1
    err = capsys.readouterr().err
    assert "2 images are too few for fid" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "few").exists()


def test_the_centred_bootstrap_keeps_the_spread_of_biased_resamples_about_the_value():
    x = torch.arange(50, dtype=torch.float64)

    def biased(i: torch.Tensor) -> float:  # resamples read 10 higher, as repeated images raise FID
        return float(x[i].mean()) + 10

    value = float(x.mean())
    low, high = centred_bootstrap(biased, value, 50, draws=100, seed=3)
    plain_low, plain_high = bootstrap(biased, 50, draws=100, seed=3)
    assert low < value < high and plain_low > value  # the percentile interval of the biased resamples misses it
    assert high - low == pytest.approx(plain_high - plain_low)
