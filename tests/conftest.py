"""Shared fixtures: a tiny Qwen2 model and tokenizer built offline, saved once per session."""

import os

import pytest


# Nothing may reach the Hub; TRL's telemetry is off too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    from trl_ulma.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture
def tokenizer(model_dir):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(model_dir)


@pytest.fixture
def fast_settings(tmp_path):
    """Fast CPU training settings shared by every trainer config in the tests."""
    return dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )


@pytest.fixture
def make_args(fast_settings):
    """Config factory with `fast_settings`; keyword arguments override them."""

    def make(config_class=None, **overrides):
        from trl_ulma import ULMAConfig

        return (config_class or ULMAConfig)(**(fast_settings | overrides))

    return make
