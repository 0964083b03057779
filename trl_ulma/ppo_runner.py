"""PPO for the RLHF baseline, run as a file by a separate Python environment with TRL <= 1.12.

TRL removed its PPOTrainer in 1.13 (huggingface/trl#7020); TRL 1.12 still has it as `trl.experimental.ppo`. This
package needs TRL 1.16, so PPO runs in another environment (``bash scripts/setup_ppo_env.sh`` builds it) and
`trl_ulma.baselines.train_rlhf(algorithm="ppo")` calls this file with that environment's Python::

    <ppo-python> trl_ulma/ppo_runner.py --spec spec.json

It imports only torch, transformers, datasets and trl (never `trl_ulma`, which imports TRL 1.16 internals).

The spec (JSON):
    model         the policy's starting point (a local Hugging Face folder); also the frozen reference policy
    reward_model  a sequence-classification reward model with the policy's tokenizer (PPO scores the policy's token
                  ids directly); it is the reward and also initialises the value model
    tokenizer     the tokenizer's folder (default: ``model``)
    prompts       a jsonl file, one ``{"input_ids": [...]}`` per prompt (already tokenized)
    output_dir    where the policy, its tokenizer and ``trainer_state.json`` (the log history) are saved
    config        `PPOConfig` fields. Unless set: ``stop_token="eos"`` (answers end at EOS, as with RLOO),
                  ``num_sample_generations=0``, and ``total_episodes = max_steps x the batch`` when ``max_steps > 0``
                  (PPO counts episodes; it ignores ``max_steps``).

Each log entry gets ``reward``: PPO's ``objective/scores``, the reward model's mean score of the sampled answers
(what RLOO logs as ``reward``). Exits with status 3 and a message when this environment cannot run PPO.
"""

import argparse
import dataclasses
import json
import os
import sys


LAST_TRL_WITH_PPO = "1.12"
UNAVAILABLE = 3  # exit status: this environment cannot run PPO


def fail(message: str, status: int = UNAVAILABLE):
    print(f"trl_ulma PPO runner ({sys.executable}): {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def load_ppo():
    """`PPOConfig`, `PPOTrainer` from this environment's TRL, or exit with the reason and the fix."""
    fix = "Build the PPO environment with `bash scripts/setup_ppo_env.sh` and use the Python it prints."
    try:
        import trl
        from packaging.version import Version
    except ImportError as error:
        fail(f"TRL is not installed here ({error}). {fix}")
    if Version(trl.__version__).release[:2] > Version(LAST_TRL_WITH_PPO).release:
        fail(f"TRL {trl.__version__} has no PPOTrainer (removed in TRL 1.13, huggingface/trl#7020). {fix}")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # experimental is the point: PPO left TRL's main API
    try:
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError as error:
        fail(f"TRL {trl.__version__} has no `trl.experimental.ppo` ({error}). {fix}")
    return trl.__version__, PPOConfig, PPOTrainer


def read_prompts(path: str) -> list[list[int]]:
    with open(path) as file:
        return [json.loads(line)["input_ids"] for line in file if line.strip()]


def train(spec: dict) -> str:
    trl_version, PPOConfig, PPOTrainer = load_ppo()

    import torch
    import transformers
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    print(
        f"trl_ulma PPO runner: trl {trl_version}, transformers {transformers.__version__}, torch {torch.__version__}",
        flush=True,
    )
    config = dict(spec.get("config") or {})
    unknown = set(config) - {field.name for field in dataclasses.fields(PPOConfig)} - {"output_dir"}
    if unknown:
        fail(f"{sorted(unknown)} are not fields of TRL {trl_version}'s PPOConfig.", status=2)
    if "stop_token_id" not in config:
        config.setdefault("stop_token", "eos")
    config.setdefault("num_sample_generations", 0)
    config["output_dir"] = output_dir = spec["output_dir"]
    args = PPOConfig(**config)
    if args.total_episodes is None and args.max_steps > 0:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        args.total_episodes = args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
        args.total_episodes *= world_size

    tokenizer = AutoTokenizer.from_pretrained(spec.get("tokenizer") or spec["model"])
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the prompts are left-padded, the answers follow them
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    prompts = read_prompts(spec["prompts"])
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    if len(prompts) < batch:  # PPO's loader drops incomplete batches: it would wait forever for a full one
        fail(f"{len(prompts)} prompts, fewer than one batch ({batch}): lower the batch size.", status=2)
    dataset = Dataset.from_dict({"input_ids": prompts})

    policy = AutoModelForCausalLM.from_pretrained(spec["model"])
    reference = AutoModelForCausalLM.from_pretrained(spec["model"])
    reward_model = AutoModelForSequenceClassification.from_pretrained(spec["reward_model"], num_labels=1)
    value_model = AutoModelForSequenceClassification.from_pretrained(spec["reward_model"], num_labels=1)

    class Trainer(PPOTrainer):
        def log(self, logs, *args, **kwargs):
            if "objective/scores" in logs:
                logs = {**logs, "reward": logs["objective/scores"]}
            return super().log(logs, *args, **kwargs)

    trainer = Trainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=value_model,
    )
    trainer.train()
    tokenizer.padding_side = padding_side
    trainer.save_model(output_dir)  # the policy alone, and its tokenizer
    trainer.save_state()  # trainer_state.json: the log history
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="the run's JSON spec (see the module docstring)")
    with open(parser.parse_args(argv).spec) as file:
        spec = json.load(file)
    print(f"trl_ulma PPO runner: policy saved to {train(spec)}", flush=True)


if __name__ == "__main__":
    main()
