"""The baselines: the data each method derives from the point-wise rows, and a few training steps of each."""

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from trl_ulma import baselines
from trl_ulma.baselines import positives, preference_pairs, unique_prompts, unpaired_labels
from trl_ulma.testing import toy_dataset


ROWS = [  # prompt a: three graded answers; b: a positive alone; c: a tie
    {"prompt": "a", "completion": " best", "score": 1.0},
    {"prompt": "a", "completion": " worst", "score": 0.0},
    {"prompt": "a", "completion": " middle", "score": 0.5},
    {"prompt": "b", "completion": " only", "score": 1.0},
    {"prompt": "c", "completion": " one", "score": 0.2},
    {"prompt": "c", "completion": " two", "score": 0.2},
]


def test_derived_data():
    rows = Dataset.from_list(ROWS)
    assert preference_pairs(rows).to_list() == [
        {"prompt": "a", "chosen": " best", "rejected": " worst"},
        {"prompt": "a", "chosen": " best", "rejected": " middle"},
        {"prompt": "a", "chosen": " middle", "rejected": " worst"},
    ]
    assert positives(rows).to_list() == [{"prompt": "a", "completion": " best"}, {"prompt": "b", "completion": " only"}]
    assert positives(rows, positive_threshold=0.5)["completion"] == [" best", " middle", " only"]
    assert unpaired_labels(rows, positive_threshold=0.5)["label"] == [True, False, True, True, False, False]
    assert unique_prompts(rows)["prompt"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no preference pair"):
        preference_pairs(Dataset.from_list(ROWS[3:]))


def test_derived_data_from_pairs_and_messages():
    pairs = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": "hi"}],
                "chosen": [{"role": "assistant", "content": "hello"}],
                "rejected": [{"role": "assistant", "content": "go away"}],
            },
        ]
    )
    assert preference_pairs(pairs).to_list() == pairs.to_list()
    assert unpaired_labels(pairs)["label"] == [True, False]
    assert unique_prompts(pairs)["prompt"] == [[{"role": "user", "content": "hi"}]]


def test_ppo_is_refused_with_the_reason_when_not_configured(model_dir, monkeypatch):
    """PPO runs in a separate TRL <= 1.12 environment (tests/test_ppo.py): without one, the error says how to get it."""
    monkeypatch.delenv(baselines.PPO_PYTHON_ENV, raising=False)
    with pytest.raises(
        baselines.PPOUnavailableError,
        match=r"no PPOTrainer: removed in TRL 1.13, huggingface/trl#7020\).*setup_ppo_env\.sh.*TRL_ULMA_PPO_PYTHON",
    ):
        baselines.train_rlhf(model_dir, toy_dataset(8), "out", reward_model=model_dir, algorithm="ppo")


@pytest.mark.slow
def test_every_baseline_trains(model_dir, tokenizer, tmp_path, fast_settings):
    settings = {key: value for key, value in fast_settings.items() if key != "output_dir"} | {"max_steps": 2}
    dataset = toy_dataset(16)
    base = load_file(f"{model_dir}/model.safetensors")
    runs = [
        (name, getattr(baselines, f"train_{name}"), {})
        for name in ("sft", "reward_model", "dpo", "kto", "unlikelihood", "pointwise_dpo", "ulma")
    ]
    runs.append(
        (
            "rlhf",
            baselines.train_rlhf,
            dict(
                reward_model=str(tmp_path / "reward_model"), reward_processing_class=tokenizer, max_completion_length=8
            ),
        )
    )
    for name, train, extra in runs:
        output_dir = str(tmp_path / name)
        assert train(model_dir, dataset, output_dir, processing_class=tokenizer, **settings, **extra) == output_dir
        trained = load_file(f"{output_dir}/model.safetensors")
        # The shared backbone moved (the reward model also gained a `score` head)
        assert not torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
        with open(f"{output_dir}/trainer_state.json") as file:
            assert '"step": 2' in file.read(), name
