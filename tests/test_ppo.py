"""PPO for the RLHF baseline: TRL 1.12's PPOTrainer run by `trl_ulma/ppo_runner.py` in a separate environment.

The refusals need no PPO environment; the training tests run when ``$TRL_ULMA_PPO_PYTHON`` names one (CI builds it
with ``scripts/setup_ppo_env.sh``) and are skipped otherwise.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from trl_ulma import baselines
from trl_ulma.baselines import PPO_PYTHON_ENV, PPOUnavailableError, rlhf_note
from trl_ulma.experiment import Experiment, run_experiment
from trl_ulma.testing import toy_dataset


EXPERIMENTS = Path(__file__).parent.parent / "experiments"
PPO_PYTHON = os.environ.get(PPO_PYTHON_ENV)
needs_ppo = pytest.mark.skipif(
    not PPO_PYTHON,
    reason=f"no PPO environment: run `bash scripts/setup_ppo_env.sh` and set {PPO_PYTHON_ENV} to the Python it prints",
)


def train_ppo(model_dir, output_dir, **kwargs):
    return baselines.train_rlhf(
        model_dir, toy_dataset(8), str(output_dir), reward_model=model_dir, algorithm="ppo", **kwargs
    )


def test_ppo_refused_when_not_configured(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(PPO_PYTHON_ENV, raising=False)
    with pytest.raises(PPOUnavailableError, match="none is configured") as error:
        train_ppo(model_dir, tmp_path)
    message = str(error.value)
    assert "removed in TRL 1.13, huggingface/trl#7020" in message
    assert "bash scripts/setup_ppo_env.sh" in message and PPO_PYTHON_ENV in message and "ppo_python" in message
    assert not any(tmp_path.iterdir())  # refused before any work


def test_ppo_refused_when_the_python_is_missing(model_dir, tmp_path, monkeypatch):
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(PPOUnavailableError, match=r"does not exist.*scripts/setup_ppo_env\.sh"):
        train_ppo(model_dir, tmp_path, ppo_python=missing)
    monkeypatch.setenv(PPO_PYTHON_ENV, missing)
    with pytest.raises(PPOUnavailableError, match=rf"\(from \${PPO_PYTHON_ENV}\) does not exist"):
        train_ppo(model_dir, tmp_path)


def test_unknown_rlhf_algorithm(model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"one of \('rloo', 'ppo'\), got 'dpo'"):
        baselines.train_rlhf(model_dir, toy_dataset(8), str(tmp_path), reward_model=model_dir, algorithm="dpo")


@pytest.mark.slow
def test_ppo_refused_by_an_environment_without_ppo(model_dir, tmp_path):
    """This environment's own Python has TRL 1.16: the runner says so, and the error names the fix."""
    with pytest.raises(PPOUnavailableError, match=r"(?s)has no PPOTrainer \(removed in TRL 1\.13.*setup_ppo_env\.sh"):
        train_ppo(model_dir, tmp_path / "out", ppo_python=sys.executable)


def test_experiment_gives_ppo_the_training_arguments_fields(tmp_path):
    config = yaml.safe_load((EXPERIMENTS / "tiny.yaml").read_text())
    config["methods"]["rlhf"] = {"algorithm": "ppo", "response_length": 8}
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump(config))
    experiment = Experiment(path, tmp_path / "run")
    settings = experiment._settings("rlhf", experiment.methods["rlhf"])
    assert settings["algorithm"] == "ppo" and settings["response_length"] == 8
    assert settings["learning_rate"] == 3.0e-3 and settings["max_steps"] == 60 and settings["seed"] == 0
    assert "max_length" not in settings  # a TRL field, not a TrainingArguments one: PPOConfig would refuse it
    rloo = experiment._settings("rlhf", {"beta": 0.05})
    assert "algorithm" not in rloo and rloo["learning_rate"] == 3.0e-3
    assert "PPO" in rlhf_note("ppo") and "RLOO" in rlhf_note("rloo")


@pytest.mark.slow
@needs_ppo
def test_ppo_trains_the_policy(model_dir, tokenizer, tmp_path, fast_settings):
    settings = {key: value for key, value in fast_settings.items() if key != "output_dir"} | {"max_steps": 2}
    reward_model = baselines.train_reward_model(
        model_dir, toy_dataset(16), str(tmp_path / "reward_model"), processing_class=tokenizer, **settings
    )
    output_dir = tmp_path / "ppo"
    result = baselines.train_rlhf(
        model_dir,
        toy_dataset(16),
        str(output_dir),
        reward_model=reward_model,
        processing_class=tokenizer,
        reward_processing_class=tokenizer,
        algorithm="ppo",
        response_length=8,
        **settings,
    )
    assert result == str(output_dir)
    base, trained = load_file(f"{model_dir}/model.safetensors"), load_file(output_dir / "model.safetensors")
    assert set(trained) == set(base)  # the policy alone, no value head
    assert not torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    assert (output_dir / "tokenizer.json").is_file()
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert [(entry["step"], "reward" in entry) for entry in state["log_history"]] == [(1, True), (2, True)]


@pytest.mark.slow
@needs_ppo
def test_tiny_experiment_with_ppo(tmp_path):
    config = yaml.safe_load((EXPERIMENTS / "tiny.yaml").read_text())
    config["model"] = {"tiny": {"hidden_size": 32, "seed": 0}}
    config["data"] |= {"rows": 24, "eval_prompts": 2, "judge_prompts": 4}
    config["training"] |= {"max_steps": 2, "per_device_train_batch_size": 4}
    config["methods"] = {"base": {}, "reward_model": {}, "rlhf": {"algorithm": "ppo", "response_length": 8}}
    config["evaluation"] |= {"max_new_tokens": 8}
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_experiment(path, output_dir=tmp_path / "run")
    assert set(result["results"]) == {"base", "rlhf"}
    assert rlhf_note("ppo") in result["notes"]
    state = json.loads((tmp_path / "run" / "rlhf" / "trainer_state.json").read_text())
    assert sum("reward" in entry for entry in state["log_history"]) == 2  # the training curve's points
