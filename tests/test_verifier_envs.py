"""Isolated verifier environments: the recipes, the commands that build them, a real offline install of a fake
recipe, its shim serving protocol v1 on loopback, the adapters (PickScore on a random tiny CLIP, the others against
stub packages) and the one-line errors."""

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy
import pytest
import torch

from noisesearch import cli, verifier_protocol
from noisesearch.errors import NoiseSearchError
from noisesearch.rewards.remote import RemoteReward
from noisesearch.serving import environments
from noisesearch.serving.adapters import hpsv2, hpsv3, imagereward, pickscore, vqascore
from noisesearch.serving.adapters.common import to_pil
from noisesearch.serving.environments import RECIPES, SHIM_PACKAGES, Recipe, venv_python

STUB_ADAPTER = '''
from pathlib import Path

import torch

PACKAGE = "torch"
IMPORTS = ("torch", "safetensors", "PIL")
WEIGHTS = {"offset": "a text file holding a number added to every score"}


def load(weights, device):
    offset = float(Path(weights["offset"]).read_text())
    return lambda images, prompts: images.float().mean((1, 2, 3)) + torch.tensor([len(p) for p in prompts]) + offset
'''


def stub_scores(images: torch.Tensor, prompts: list[str], offset: float) -> list[float]:
    return (images.float().mean((1, 2, 3)) + torch.tensor([len(p) for p in prompts]) + offset).tolist()


def test_recipes_pin_what_the_packages_metadata_pins():
    assert set(RECIPES) == {"imagereward", "hpsv2", "hpsv3", "pickscore", "vqascore"}
    assert {"image-reward==1.5", "timm==0.6.13", "fairscale==0.4.13"} <= set(RECIPES["imagereward"].packages)
    assert "transformers==4.45.2" in RECIPES["hpsv3"].packages
    assert [r.name for r in RECIPES.values() if r.torch_pin] == ["vqascore"]
    assert RECIPES["vqascore"].torch_pin == "torch==2.5.1"
    for recipe in RECIPES.values():
        assert all("==" in package or "<" in package for package in recipe.packages), recipe.name
        adapter = importlib.import_module(f"noisesearch.serving.adapters.{recipe.adapter}")
        assert recipe.weights == adapter.WEIGHTS and recipe.weights and callable(adapter.load)
        assert adapter.PACKAGE and adapter.IMPORTS


def test_install_commands_borrow_torch_through_a_constraint_or_download_it(tmp_path):
    env = tmp_path / "pickscore"
    venv, pip = environments.install_commands(RECIPES["pickscore"], env, "2.13.0+cpu")
    assert venv == [sys.executable, "-m", "venv", "--without-pip", str(env)]
    assert pip[:6] == [sys.executable, "-m", "pip", "--python", str(venv_python(env)), "install"]
    assert pip[pip.index("-c") + 1] == str(env / "constraints.txt")
    assert pip[-len(SHIM_PACKAGES) - 1:] == ["transformers==5.25.0", *SHIM_PACKAGES]
    _, pip = environments.install_commands(RECIPES["vqascore"], env, None)
    assert "-c" not in pip and "t2v-metrics==3.0" in pip


def test_cache_root_is_the_flag_then_the_variable_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv(environments.CACHE_ENV, str(tmp_path / "from-env"))
    assert environments.cache_root(tmp_path / "flag") == tmp_path / "flag"
    assert environments.cache_root() == tmp_path / "from-env"
    monkeypatch.delenv(environments.CACHE_ENV)
    assert environments.cache_root() == Path.home() / ".cache/noisesearch/verifiers"


def test_host_packages_are_torch_and_what_it_requires():
    names = {path.name for path in environments.host_packages(("torch",))}
    assert {"torch", f"torch-{torch.__version__}.dist-info", "typing_extensions.py", "filelock"} <= names
    assert "__pycache__" not in names and not any(name.endswith(".pth") for name in names)


@pytest.fixture(scope="module")
def fake_env(tmp_path_factory):
    """A real install of a fake recipe (no package to download: pip runs offline and finds everything borrowed)
    whose adapter is STUB_ADAPTER."""
    root = tmp_path_factory.mktemp("verifiers")
    adapters = root / "adapters"
    shutil.copytree(environments.ADAPTERS, adapters, ignore=shutil.ignore_patterns("__pycache__"))
    (adapters / "stub.py").write_text(STUB_ADAPTER)
    spec = importlib.util.spec_from_file_location("noisesearch.serving.adapters.stub", adapters / "stub.py")
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "noisesearch.serving.adapters.stub", stub)
        mp.setitem(RECIPES, "fake", Recipe("fake", ("torch",), "stub"))
        mp.setattr(environments, "ADAPTERS", adapters)
        mp.setattr(environments, "BORROWED", ("torch", "safetensors", "numpy", "pillow"))
        mp.setenv("PIP_NO_INDEX", "1")
        env = environments.install("fake", cache_dir=root)
        offset = root / "offset.txt"
        offset.write_text("0.25")
        yield env, root, offset


def test_install_makes_a_venv_that_borrows_torch_and_carries_the_shim(fake_env):
    env, root, _ = fake_env
    assert env == root / "fake" and venv_python(env).exists()
    assert (env / "constraints.txt").read_text() == f"torch=={torch.__version__}\n"
    assert (env / environments.HOST_PACKAGES / "torch").resolve() == Path(torch.__file__).parent.resolve()
    log = (root / "fake.log").read_text()
    assert "Requirement already satisfied: torch" in log and f"-c {env / 'constraints.txt'}" in log
    assert (env / "shim/verifier_protocol.py").read_bytes() == Path(verifier_protocol.__file__).read_bytes()
    assert (env / "shim/adapters/stub.py").is_file() and (env / "shim/server.py").is_file()
    manifest = json.loads((env / environments.MANIFEST).read_text())
    assert manifest["torch"] == torch.__version__ and manifest["verifier"] == "fake"
    with pytest.raises(NoiseSearchError, match="already has an environment.*--force"):
        environments.install("fake", cache_dir=root)


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": verifier_protocol.CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_shim_serves_protocol_v1_from_the_environment(fake_env, monkeypatch):
    env, root, offset = fake_env
    monkeypatch.setitem(RECIPES, "fake", Recipe("fake", ("torch",), "stub"))
    command, environ = environments.shim_command("fake", [f"offset={offset}"], port=0, cache_dir=root)
    assert environ["HF_HUB_OFFLINE"] == "1" and command[0] == str(venv_python(env))
    server = subprocess.Popen([*command, "--max-body", "4000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=environ, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving stub (torch=="), server.stderr.read()
        url = line.split(" on ")[1].strip()
        with urllib.request.urlopen(url + verifier_protocol.HEALTH_PATH, timeout=30) as answer:
            health = json.loads(answer.read())
        assert health["reward"] == "stub" and health["device"] == "cpu"
        assert health["version"] == f"torch=={torch.__version__} offset.txt"
        remote = RemoteReward(url, prompts=["a cat", "two dogs"])  # the client takes the shim's health
        assert remote.name == "remote:stub" and remote.takes_prompts
        pair = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
        assert remote(pair, torch.tensor([1, 0])).tolist() == pytest.approx(
            stub_scores(pair, ["two dogs", "a cat"], 0.25))
        images = torch.linspace(-1, 1, 3 * 3 * 8 * 8).reshape(3, 3, 8, 8)
        prompts = ["a cat", "two dogs", "x"]
        ids = ["c", "a", "b"]
        body = verifier_protocol.encode_request(verifier_protocol.ScoreRequest(ids, images, prompts))
        status, reply = post(url + verifier_protocol.SCORE_PATH, body)
        assert status == 200
        assert verifier_protocol.decode_reply(reply, ids) == pytest.approx(stub_scores(images, prompts, 0.25))
        assert post(url + verifier_protocol.SCORE_PATH, b"not safetensors")[0] == 400
        labels = verifier_protocol.encode_request(verifier_protocol.ScoreRequest(ids, images, [1, 2, 3]))
        status, reply = post(url + verifier_protocol.SCORE_PATH, labels)
        assert status == 400 and "prompt" in reply["error"]
        big = verifier_protocol.encode_request(verifier_protocol.ScoreRequest(["a"], torch.zeros(1, 3, 32, 32), ["x"]))
        assert post(url + verifier_protocol.SCORE_PATH, big)[0] == 413
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0


def test_the_shim_answers_busy_past_its_waiting_requests_and_scores_again_once_free(fake_env, monkeypatch):
    env, _, offset = fake_env
    monkeypatch.syspath_prepend(str(env / "shim"))  # as the shim runs: its protocol copy and adapters beside it
    spec = importlib.util.spec_from_file_location("shim_server", env / "shim" / "server.py")
    shim = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(shim)
        verifier = shim.Verifier("stub", {"offset": str(offset)}, "cpu", max_waiting=1)
        entered, release = threading.Event(), threading.Event()
        scorer = verifier.score_fn

        def held(images, prompts):
            entered.set()
            release.wait(30)
            return scorer(images, prompts)

        verifier.score_fn = held
        body = verifier_protocol.encode_request(verifier_protocol.ScoreRequest(["a"], torch.zeros(1, 3, 8, 8), ["x"]))
        answers = []
        first = threading.Thread(target=lambda: answers.append(verifier.score(body)))
        first.start()
        assert entered.wait(30)
        assert verifier.score(body) == (503, {"error": "verifier stub is busy: retry later"})
        release.set()
        first.join(30)
        assert answers[0][0] == 200 and answers[0][1]["scores"] == pytest.approx([1.25])
        assert verifier.score(body)[0] == 200  # the slot is free again
    finally:
        for name in [n for n in sys.modules if n in ("verifier_protocol", "adapters") or n.startswith("adapters.")]:
            del sys.modules[name]


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(NoiseSearchError, match="unknown verifier 'clip'; choose one of imagereward"):
        environments.install("clip", cache_dir=tmp_path)
    with pytest.raises(NoiseSearchError, match="pins torch==2.5.1.*--allow-torch-download"):
        environments.install("vqascore", cache_dir=tmp_path)
    assert not (tmp_path / "vqascore").exists()
    recipe = RECIPES["pickscore"]
    with pytest.raises(NoiseSearchError, match="missing: processor"):
        environments.parse_weights(recipe, [f"model={tmp_path}"])
    with pytest.raises(NoiseSearchError, match="NAME=PATH with NAME one of model, processor"):
        environments.parse_weights(recipe, ["checkpoint=x"])
    with pytest.raises(NoiseSearchError, match="weights path does not exist: processor="):
        environments.parse_weights(recipe, [f"model={tmp_path}", f"processor={tmp_path / 'absent'}"])
    assert cli.main(["verifier", "serve", "pickscore", "--cache-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "has no environment at" in error and "verifier install pickscore" in error


def test_a_failed_install_leaves_its_log_and_no_environment(tmp_path, monkeypatch):
    monkeypatch.setitem(RECIPES, "broken", Recipe("broken", ("torch", "noisesearch-absent-package==1.0"), "stub"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(NoiseSearchError, match=r"^pip install failed \(ERROR: .*noisesearch-absent-package.*\); see "
                                                f"{tmp_path / 'broken.log'}$"):
        environments.install("broken", cache_dir=tmp_path)
    assert not (tmp_path / "broken").exists() and (tmp_path / "broken.log").is_file()


def tiny_clip(folder: Path) -> None:
    """A random CLIPModel and a CLIP processor with a vocabulary of letters, saved as PickScore's would be."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {token: i for i, token in enumerate([*letters, *(c + "</w>" for c in letters), "<|startoftext|>",
                                                 "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                                 crop_size={"height": 16, "width": 16}),
                              tokenizer=CLIPTokenizer.from_pretrained(folder))
    processor.save_pretrained(folder / "processor")
    torch.manual_seed(0)
    text = dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=52, eos_token_id=53, pad_token_id=53)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder / "model")


@torch.inference_mode()
def test_pickscore_scores_each_image_against_its_own_prompt(tmp_path):
    from transformers import CLIPModel

    tiny_clip(tmp_path)
    score = pickscore.load({"model": str(tmp_path / "model"), "processor": str(tmp_path / "processor")}, "cpu")
    images = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1)) * 2 - 1
    prompts = ["a red cat", "dogs"]
    scores = score(images, prompts)
    assert scores.shape == (2,)
    swapped = score(images.flip(0), prompts[::-1])
    assert torch.allclose(swapped.flip(0), scores, atol=1e-5)  # each pair scored on its own
    assert not torch.allclose(score(images, prompts[::-1]), scores)  # and the prompt matters
    model = CLIPModel.from_pretrained(tmp_path / "model").eval()
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tmp_path / "processor")
    inputs = processor(text=prompts, images=to_pil(images), padding=True, return_tensors="pt")
    out = model(**inputs)
    assert torch.allclose(scores, out.logits_per_image.diagonal(), atol=1e-4)  # CLIP's logits, paired


def module(monkeypatch, name: str, **attrs) -> types.ModuleType:  # type: ignore[no-untyped-def]
    """A fake module registered in sys.modules for this test (and as its parent's attribute)."""
    fake = types.ModuleType(name)
    fake.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, fake)
    parent, _, child = name.rpartition(".")
    if parent:
        monkeypatch.setattr(sys.modules[parent], child, fake, raising=False)
    return fake


class Recorder:
    """Records its constructor's arguments, as the stub packages' classes and loaders do."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.args, self.kwargs = args, kwargs


IMAGES = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
PROMPTS = ["a cat", "a dog on a sofa"]
RED = [float(picture.getpixel((0, 0))[0]) for picture in to_pil(IMAGES)]  # each image's first pixel's red


def test_imagereward_loads_local_files_and_scores_each_pair_in_one_batch(tmp_path, monkeypatch):
    calls = {}

    class Tokenizer(Recorder):
        additional_special_tokens_ids = [7]
        from_pretrained = classmethod(lambda cls, path: cls(path))

        def add_special_tokens(self, tokens):  # type: ignore[no-untyped-def]
            calls.setdefault("special", []).append(tokens)

        def __call__(self, prompts, **kwargs):  # type: ignore[no-untyped-def]
            assert kwargs["max_length"] == imagereward.PROMPT_TOKENS
            ids = torch.tensor([[len(p)] for p in prompts])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def load(checkpoint, device, med_config):  # type: ignore[no-untyped-def]
        calls["load"] = (checkpoint, device, med_config)
        blip = types.SimpleNamespace(tokenizer=sys.modules["ImageReward.models.BLIP.blip_pretrain"].init_tokenizer())
        to_tensor = lambda pil: torch.from_numpy(numpy.asarray(pil).copy()).float().mean()  # noqa: E731
        return types.SimpleNamespace(blip=blip, preprocess=to_tensor,
                                     score_gard=lambda ids, mask, pixels: (ids[:, 0] + pixels)[:, None])

    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(BertTokenizer=Tokenizer))
    module(monkeypatch, "ImageReward", load=load)
    module(monkeypatch, "ImageReward.models")
    module(monkeypatch, "ImageReward.models.BLIP")
    module(monkeypatch, "ImageReward.models.BLIP.blip_pretrain", init_tokenizer=lambda: pytest.fail("hub tokenizer"))
    weights = {"checkpoint": "/w/ImageReward.pt", "med_config": "/w/med_config.json", "tokenizer": "/w/bert"}
    scores = imagereward.load(weights, "cpu")(IMAGES, PROMPTS)
    assert calls["load"] == ("/w/ImageReward.pt", "cpu", "/w/med_config.json")
    assert calls["special"] == [{"bos_token": "[DEC]"}, {"additional_special_tokens": ["[ENC]"]}]
    pixels = torch.tensor([((IMAGES[i].clamp(-1, 1) + 1) * 127.5).round().mean() for i in range(2)])
    assert torch.allclose(scores, torch.tensor([5.0, 15.0]) + pixels)


def test_hpsv2_loads_the_checkpoint_into_open_clip_and_scores_the_pairs_cosines(tmp_path, monkeypatch):
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "HPS_v2.1_compressed.pt")
    model = Recorder()
    model.load_state_dict = lambda state: setattr(model, "state", state)
    model.eval = lambda: model
    model.encode_image = lambda pixels, normalize: torch.nn.functional.normalize(pixels, dim=-1)
    model.encode_text = lambda tokens, normalize: torch.nn.functional.normalize(tokens, dim=-1)
    preprocess = lambda pil: torch.tensor([1.0, pil.getpixel((0, 0))[0]])  # noqa: E731
    created = {}

    def create(architecture, pretrained, device):  # type: ignore[no-untyped-def]
        created.update(architecture=architecture, pretrained=pretrained)
        return model, None, preprocess

    module(monkeypatch, "open_clip", create_model_and_transforms=create,
           get_tokenizer=lambda arch: lambda prompts: torch.tensor([[1.0, float(len(p))] for p in prompts]))
    scores = hpsv2.load({"checkpoint": str(tmp_path / "HPS_v2.1_compressed.pt")}, "cpu")(IMAGES, PROMPTS)
    assert created == {"architecture": "ViT-H-14", "pretrained": None} and torch.equal(model.state["w"], torch.ones(1))
    images = torch.nn.functional.normalize(torch.tensor([[1.0, RED[0]], [1.0, RED[1]]]), dim=-1)
    texts = torch.nn.functional.normalize(torch.tensor([[1.0, 5.0], [1.0, 15.0]]), dim=-1)
    assert torch.allclose(scores, (images * texts).sum(-1))


def test_hpsv3_points_its_config_at_the_local_base_model_and_scores_mu(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / hpsv3.CONFIG).write_text("model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\nbf16: true\n")
    seen = {}

    class Inferencer(Recorder):
        def __init__(self, config_path, checkpoint_path, device):  # type: ignore[no-untyped-def]
            seen["config"] = Path(config_path).read_text()
            seen["checkpoint"] = checkpoint_path

        def reward(self, images, prompts):  # type: ignore[no-untyped-def]
            seen["sizes"] = [image.size for image in images]
            return torch.tensor([[float(len(p)), -1.0] for p in prompts])

    module(monkeypatch, "hpsv3", __file__=str(tmp_path / "__init__.py"), HPSv3RewardInferencer=Inferencer)
    scores = hpsv3.load({"checkpoint": "/w/HPSv3.safetensors", "base": "/w/Qwen2-VL"}, "cpu")(IMAGES, PROMPTS)
    assert "model_name_or_path: /w/Qwen2-VL" in seen["config"] and "bf16: true" in seen["config"]
    assert seen["checkpoint"] == "/w/HPSv3.safetensors" and seen["sizes"] == [(4, 4), (4, 4)]
    assert torch.equal(scores, torch.tensor([5.0, 15.0]))


def test_vqascore_reads_the_local_cache_and_scores_each_image_file_with_its_prompt(monkeypatch):
    from PIL import Image

    made = {}

    def forward(paths, prompts):  # type: ignore[no-untyped-def]
        return torch.tensor([Image.open(p).getpixel((0, 0))[0] + len(t) for p, t in zip(paths, prompts, strict=True)],
                            dtype=torch.float32)

    def vqa(model, device, cache_dir):  # type: ignore[no-untyped-def]
        made.update(model=model, cache_dir=cache_dir)
        return types.SimpleNamespace(model=types.SimpleNamespace(forward=forward))

    module(monkeypatch, "t2v_metrics", VQAScore=vqa)
    scores = vqascore.load({"cache": "/w/hf-cache"}, "cpu")(IMAGES, PROMPTS)
    assert made == {"model": "clip-flant5-xxl", "cache_dir": "/w/hf-cache"}
    assert torch.equal(scores, torch.tensor([RED[0] + 5, RED[1] + 15]))
