"""The reward-function loop: sample K answers per prompt from the policy, score them, train point-wise DPO or ULMA on
the scored rows, repeat. GRPO's reward functions (`trl_ulma.rewards`), trained offline round by round.

Each round r = 1..R writes ``output_dir/round_{r}/``:
    samples.jsonl   K samples per training prompt from the current policy (seed + r): the prompt's columns,
                    ``completion``, its generated ``completion_ids`` and ``eos`` (whether it ended with EOS)
    scored.jsonl    point-wise rows ``prompt``, ``completion``, ``score``, ``reward``, ``eos`` (`reward_targets`),
                    readable by `trl_ulma.files.load_data` and `trl-ulma ulma --dataset_name`; ``scoring.json`` counts
                    the samples without a reward, the constant prompts dropped and the positives
    model/          the policy trained from the current one (with its tokenizer, ``train_results.json`` and
                    ``trainer_state.json``)
    metrics.json    the round's samples' mean reward (they come from the previous policy), the counts, the training
                    metrics and, on held-out prompts, the new policy's figures: mean reward of its own samples, KL to
                    the initial model estimated on them, length, repetition, distinct 3-grams
``round_0/metrics.json`` holds the initial model's held-out figures, ``loop.json`` the config, ``results.json`` the
table of rounds. Samples come from transformers' ``generate``, or from vLLM when it is installed and a GPU is present
(``use_vllm``). Held-out samples use the same seed every round (common random numbers across rounds); with
``temperature=1`` and ``top_p=1`` (the defaults) they come from the policy itself and the KL estimate is unbiased.
The trainers end text completions with EOS, also those cut at ``max_new_tokens`` (``eos`` false), which teaches the
policy to stop there: keep ``max_new_tokens`` above the answers' length.

Targets. Each round fits the reward in its own units: the trainer's ``score_scale`` is the round's reward range (so
``score_scale * score`` is the reward less the round's lowest) and its log-probs are sums over the answer's tokens
(``length_normalize=False``). Point-wise DPO (each prompt's mean reward its baseline) then fits
beta * log(pi(y|x) / pi_ref(y|x)) = r(x, y) - V(x), the optimum of max E[r] - beta * KL(pi || pi_ref): beta is the
reward one nat of KL costs, as in RLHF, and sets how far the policy moves. ULMA trains each prompt's best sample by
SFT and fits the others the same way around its own baseline (``score_baseline="mean"`` under its per-group
reduction: halfway between the positives, scored at the round's top, and the negatives' mean). ``training`` overrides
both settings; the trainers' own defaults, ``score_scale="auto"`` with per-token means, go together (one standard
deviation of reward asks for one nat per token, whatever beta is). The record of a run (``loop.json``) keeps the
targets, so a run of an older release, which used those defaults, is not resumed on others.

Reference. With ``reference="initial"`` every round's optimum is the same pi_0 * exp(r / beta) / Z: the rounds refine
the fit on samples from the improving policy, and the KL to pi_0 stays regularised. With ``"previous"`` round t's
optimum is pi_{t-1} * exp(r / beta) / Z, so after T rounds pi_0 * exp(T * r / beta) / Z: beta / T, the regularisation
weakening each round (more reward, more drift). The default is "initial".

Resume: each stage writes its output atomically (a temporary file or folder, then a rename) and is skipped when the
output exists, so a killed run restarted with the same config goes on at the round and stage it stopped in. A stage
that runs again removes what was derived from its old output: the round's later stages and the later rounds.
``rounds`` may grow between runs; another change of the config (or of the model, reward functions or prompts) in an
existing ``output_dir`` stops, unless ``overwrite=True``, which starts over.
"""

import gc
import importlib.util
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from trl.trainer.utils import create_model_from_path

from .data import split_by_prompt
from .evaluation import as_completion
from .pointwise_dpo_config import PointwiseDPOConfig
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .reward_loop_state import (
    check_run,
    digest,
    read_jsonl,
    redo_from,
    remove,
    stage_done,
    write_json,
    write_jsonl,
)
from .reward_targets import POSITIVES, reward_rows
from .rewards import RewardFunc, load_reward_funcs, reward_name, score_completions
from .sampling import (
    GenerationSettings,
    Sample,
    _device,
    distinct_ngrams,
    repetition_rate,
    sample_completions,
    sample_completions_vllm,
    sample_kl,
    vllm_available,
)
from .ulma_config import ULMAConfig
from .ulma_trainer import ULMATrainer


logger = logging.getLogger(__name__)

TRAINERS = {"ulma": (ULMATrainer, ULMAConfig), "pointwise_dpo": (PointwiseDPOTrainer, PointwiseDPOConfig)}
REFERENCES = ("initial", "previous")


@dataclass
class RewardLoopConfig:
    """How the loop runs. ``positives``: which rows get score 1 (`reward_targets`); by default each prompt's best for
    ULMA (its SFT rows) and none for point-wise DPO (which fits every reward as it is). ``eval_prompts``: prompts held
    out of ``prompts`` for the held-out figures (a count, or a fraction if < 1), when no held-out dataset is given.
    ``use_vllm``: draw the samples with vLLM (None: when it is installed and a GPU is present; the policy is loaded
    from its saved folder, with ``vllm_gpu_memory_utilization`` of the GPU). ``generation_batch_size``: samples
    generated at once with transformers (64 draws 1.6x the samples per second of 16 from SmolLM2-135M on 2 CPU
    cores, `benchmarks/generation_batch.py`; it does not change their distribution). ``training``: fields of the
    trainer's config (`ULMAConfig` / `PointwiseDPOConfig`) over the loop's defaults: ``report_to="none"``,
    ``save_strategy="no"``, ``seed``, on a machine without GPU ``use_cpu=True`` and ``bf16=False``, the reward's own
    units (``score_scale`` the round's reward range, ``length_normalize=False``: the module docstring), and for
    point-wise DPO ``score_baseline="prompt"`` (each prompt's mean reward estimates
    beta * log Z(x), see `reward_targets`)."""

    output_dir: str
    rounds: int = 2
    num_generations: int = 4
    trainer: str = "ulma"
    reference: str = "initial"
    positives: str | None = None
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    generation_batch_size: int = 64
    max_prompt_length: int = 256
    seed: int = 0
    eval_prompts: float | None = None
    use_vllm: bool | None = None
    vllm_gpu_memory_utilization: float = 0.3
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.positives is None:
            self.positives = "best" if self.trainer == "ulma" else "none"
        if self.use_vllm is None:
            self.use_vllm = vllm_available()
        elif self.use_vllm and not vllm_available():
            raise ValueError(
                "`use_vllm=True` needs the vllm package and a GPU (vllm installed: "
                f"{importlib.util.find_spec('vllm') is not None}, GPU: {torch.cuda.is_available()}): install vllm on a "
                "GPU machine, or leave use_vllm unset to sample with transformers."
            )
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(
                f"`vllm_gpu_memory_utilization` must be in (0, 1], got {self.vllm_gpu_memory_utilization!r}."
            )
        choices = {"trainer": list(TRAINERS), "reference": list(REFERENCES), "positives": list(POSITIVES)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        for name in ("rounds", "max_new_tokens", "generation_batch_size", "max_prompt_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {getattr(self, name)!r}.")
        if not isinstance(self.num_generations, int) or self.num_generations < 2:
            raise ValueError(
                f"`num_generations` must be an integer >= 2 (one sample per prompt carries no preference), got "
                f"{self.num_generations!r}."
            )
        if not self.temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {self.temperature!r}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p!r}.")
        if self.eval_prompts is not None and not self.eval_prompts > 0:
            raise ValueError(f"`eval_prompts` must be a count, a fraction < 1 or None, got {self.eval_prompts!r}.")
        config_class = TRAINERS[self.trainer][1]
        known = {option.name for option in fields(config_class)} - {"output_dir"}
        if unknown := [key for key in self.training if key not in known]:
            raise ValueError(
                f"`training` option {unknown[0]!r} is not a {config_class.__name__} field the loop takes "
                "(output_dir is the loop's)."
            )

    def targets(self) -> dict[str, Any]:
        """How a round's rewards become the trainer's targets (recorded in ``loop.json``)."""
        return {
            "score_scale": self.training.get("score_scale", "the round's reward range"),
            "length_normalize": self.training.get("length_normalize", False),
        }

    def training_args(self, output_dir: str | Path, reward_unit: float | None = None) -> PointwiseDPOConfig:
        """The trainer's config: the loop's defaults, then ``training``. ``reward_unit``: the round's reward range,
        the ``score_scale`` that fits the reward in its own units (with summed log-probs)."""
        defaults: dict[str, Any] = {"report_to": "none", "save_strategy": "no", "seed": self.seed}
        if reward_unit is not None:
            defaults |= {"score_scale": reward_unit, "length_normalize": False}
        if not torch.cuda.is_available() and not {"use_cpu", "bf16", "fp16"} & set(self.training):
            defaults |= {"use_cpu": True, "bf16": False}  # TRL defaults to bf16, which needs a GPU
        if self.trainer == "pointwise_dpo":
            defaults["score_baseline"] = "prompt"
        return TRAINERS[self.trainer][1](output_dir=str(output_dir), **(defaults | self.training))


@dataclass
class RewardLoopArguments:
    """The loop's command-line options (`trl.TrlParser`), named as `trl grpo`'s where it has them."""

    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Reward functions: names of `trl.rewards` functions (e.g. `think_format_reward`) or dotted import "
            "paths (`my_rewards.reward`, importable from the working directory; "
            "`trl_ulma.rewards.vader_sentiment` is an offline sentiment reward)."
        },
    )
    reward_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "Weight of each reward (the reward model first, then --reward_funcs in order); default all 1.0."
        },
    )
    reward_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A sequence-classification reward model (its logit of class 0 is the reward)."},
    )
    num_generations: int = field(default=4, metadata={"help": "Samples per prompt and round (K)."})
    rounds: int = field(default=2, metadata={"help": "Rounds of sample, score, train."})
    trainer: str = field(
        default="ulma", metadata={"help": "The trainer of each round.", "choices": list(TRAINERS)}
    )
    reference: str = field(
        default="initial",
        metadata={
            "help": "Reference of each round: the initial model (the same regularised optimum every round) or the "
            "previous round's policy (regularisation beta / T after T rounds).",
            "choices": list(REFERENCES),
        },
    )
    positives: str | None = field(
        default=None,
        metadata={
            "help": "Rows given score 1 (ULMA's positives): each prompt's best sample, those above their prompt's "
            "mean reward, or none. Default: best for ULMA, none for point-wise DPO.",
            "choices": list(POSITIVES),
        },
    )
    max_new_tokens: int = field(default=48, metadata={"help": "Maximum tokens of a sample."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    generation_batch_size: int = field(
        default=64, metadata={"help": "Samples generated at once (transformers; vLLM takes them all)."}
    )
    use_vllm: bool | None = field(
        default=False,  # not None, so that a bare --use_vllm parses (`to_config`: unset is None)
        metadata={"help": "Sample with vLLM (true or false; unset: when vllm is installed and a GPU is present)."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "Share of the GPU's memory vLLM may take while it samples."}
    )
    prompt_column: str = field(default="prompt", metadata={"help": "The prompts' column in --dataset_name."})
    eval_fraction: float = field(
        default=0.0,
        metadata={"help": "Share of prompts held out for the held-out reward and KL of each round (0: none)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an --output_dir that holds a run of another setup (else it resumes or stops)."
        },
    )

    def to_config(
        self, output_dir: str, training: dict[str, Any] | None = None, seed: int = 0, explicit: set[str] | None = None
    ) -> RewardLoopConfig:
        """The loop's config from these options (``prompt_column`` is the caller's: rename it to ``prompt``);
        ``seed`` drives the held-out split, the sampling and the trainer; ``explicit``: the flags given, if known
        (``use_vllm`` unset is None: vLLM where it runs)."""
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(
                f"--eval_fraction must be in [0, 1): the share of prompts held out, got {self.eval_fraction}."
            )
        return RewardLoopConfig(
            seed=seed,
            output_dir=output_dir,
            rounds=self.rounds,
            num_generations=self.num_generations,
            trainer=self.trainer,
            reference=self.reference,
            positives=self.positives,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            generation_batch_size=self.generation_batch_size,
            use_vllm=self.use_vllm if explicit is None or "use_vllm" in explicit else None,
            vllm_gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            eval_prompts=self.eval_fraction or None,
            training=dict(training or {}),
        )


# --------------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------------
def _load_policy(path: str | Path):
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(_device()).eval()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _columns(rows: Sequence[dict[str, Any]], leave: Sequence[str]) -> dict[str, list]:
    """The rows' columns as lists, less ``leave``."""
    return {key: [row[key] for row in rows] for key in rows[0] if key not in leave}


class _Loop:
    """One run of `run_reward_loop`: its inputs and the stages of a round."""

    def __init__(self, model, prompts, funcs, weights, config, tokenizer, eval_prompts):
        self.model, self.prompts, self.funcs, self.weights = model, prompts, funcs, weights
        self.config, self.tokenizer, self.eval_prompts = config, tokenizer, eval_prompts
        self.output_dir = Path(config.output_dir)

    def settings(self, seed: int) -> GenerationSettings:
        c = self.config
        return GenerationSettings(
            max_new_tokens=c.max_new_tokens,
            max_prompt_length=c.max_prompt_length,
            batch_size=c.generation_batch_size,
            do_sample=True,
            top_k=0,  # from the policy itself (transformers would keep the top 50 tokens): the KL estimate needs it
            temperature=c.temperature,
            top_p=c.top_p,
            seed=seed,
        )

    def policy(self, round_index: int) -> str:
        """The policy after ``round_index`` rounds."""
        return self.model if round_index == 0 else str(self.output_dir / f"round_{round_index}" / "model")

    def draw(
        self, policy: str, rows: list[dict[str, Any]], seed: int, desc: str, loaded=None
    ) -> tuple[list[dict], list[Sample]]:
        """K samples per row of the policy saved at ``policy`` (with vLLM, or with transformers from ``loaded`` if
        the caller holds it loaded): as rows (the prompt's columns, the completion, its ids and ``eos``), and as
        drawn."""
        repeated = [row for row in rows for _ in range(self.config.num_generations)]
        prompts, settings = [r["prompt"] for r in repeated], self.settings(seed)
        if self.config.use_vllm:
            memory = self.config.vllm_gpu_memory_utilization
            samples = sample_completions_vllm(policy, self.tokenizer, prompts, settings, memory)
        else:
            model = _load_policy(policy) if loaded is None else loaded
            samples = sample_completions(model, self.tokenizer, prompts, settings, desc)
            del model
        return [
            row | {"completion": as_completion(row["prompt"], s.text), "completion_ids": s.completion_ids, "eos": s.eos}
            for row, s in zip(repeated, samples, strict=True)
        ], samples

    def score(self, samples: list[dict[str, Any]]) -> list[float | None]:
        """The samples' rewards; the reward functions get every column but the prompt and completion, as in GRPO."""
        prompts, completions = [s["prompt"] for s in samples], [s["completion"] for s in samples]
        return score_completions(
            self.funcs, self.weights, prompts, completions, _columns(samples, ("prompt", "completion"))
        )

    # Stages ---------------------------------------------------------------------------------------------------------
    def sample(self, r: int, folder: Path) -> None:
        rows, _ = self.draw(self.policy(r - 1), self.prompts.to_list(), self.config.seed + r, f"round {r}: sampling")
        write_jsonl(folder / "samples.jsonl", rows)

    def build_rows(self, r: int, folder: Path) -> None:
        samples = read_jsonl(folder / "samples.jsonl")
        rewards = self.score(samples)
        rows, report = reward_rows(
            [s["prompt"] for s in samples],
            [s["completion"] for s in samples],
            rewards,
            self.config.positives,
            extra_columns={"eos": [s["eos"] for s in samples]},
        )
        scored = [reward for reward in rewards if reward is not None]
        mean = sum(scored) / len(scored) if scored else None
        counts = asdict(report) | {"samples": len(samples), "mean_reward": mean}
        if not rows:
            raise ValueError(
                f"Round {r}: no training rows: of {len(samples)} samples {report.skipped_none} got no reward and "
                f"{report.skipped_empty} are empty, and {report.constant_prompts} prompts got the same reward for all "
                "their other samples. Raise num_generations or temperature, or check the reward functions."
            )
        write_json(folder / "scoring.json", counts)
        write_jsonl(folder / "scored.jsonl", rows)

    def train(self, r: int, folder: Path) -> None:
        temporary = folder / "model.tmp"
        remove(temporary)
        rows = read_jsonl(folder / "scored.jsonl")
        rewards = [row["reward"] for row in rows]
        args = self.config.training_args(temporary, max(rewards) - min(rewards))
        start = self.policy(r - 1)
        reference = self.model if self.config.reference == "initial" else start
        ref_model = None  # DPOTrainer's copy of the policy
        if reference != start:
            ref_model = create_model_from_path(reference, **dict(args.model_init_kwargs or {}))
        trainer_class = TRAINERS[self.config.trainer][0]
        trainer = trainer_class(
            model=start,
            ref_model=ref_model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=self.tokenizer,
        )
        result = trainer.train()
        trainer.save_model(str(temporary))  # the model and its tokenizer
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        del trainer, ref_model
        _free()
        os.replace(temporary, folder / "model")

    def evaluate(self, r: int) -> dict[str, float]:
        """The held-out figures of the policy after ``r`` rounds (none without held-out prompts)."""
        if self.eval_prompts is None:
            return {}
        policy = _load_policy(self.policy(r))  # samples (unless vLLM draws them) and scores the KL
        held_out = self.eval_prompts.to_list()
        rows, samples = self.draw(self.policy(r), held_out, self.config.seed, f"round {r}: held-out", loaded=policy)
        initial = policy if r == 0 else _load_policy(self.model)
        rewards = [reward for reward in self.score(rows) if reward is not None]
        ids = [s.completion_ids for s in samples]
        kl, _ = sample_kl(
            policy, initial, self.tokenizer, [s.prompt_ids for s in samples], ids, self.config.generation_batch_size
        )
        del policy, initial
        _free()
        return {
            "eval/reward": sum(rewards) / len(rewards) if rewards else None,
            "eval/skipped": len(samples) - len(rewards),
            "eval/kl": kl,
            "eval/length": sum(map(len, ids)) / len(ids),
            "eval/eos": sum(s.eos for s in samples) / len(samples),
            "eval/repetition": repetition_rate(ids),
            "eval/distinct_3": distinct_ngrams(ids),
        }

    def round(self, r: int) -> dict[str, Any]:
        """Round ``r``'s stages, each unless its output exists; its metrics."""
        folder = self.output_dir / f"round_{r}"
        folder.mkdir(parents=True, exist_ok=True)
        if r > 0:
            for stage, run in (("sample", self.sample), ("score", self.build_rows), ("train", self.train)):
                if not stage_done(folder, stage):
                    redo_from(self.output_dir, r, stage)
                    run(r, folder)
        if not stage_done(folder, "evaluate"):
            metrics: dict[str, Any] = {"round": r, "model": self.policy(r)}
            if r > 0:
                scoring = json.loads((folder / "scoring.json").read_text())
                metrics |= {"samples/reward": scoring.pop("mean_reward")}
                metrics |= {f"samples/{key}": value for key, value in scoring.items()}
                train = json.loads((folder / "model" / "train_results.json").read_text())
                metrics |= {f"train/{key.removeprefix('train_')}": value for key, value in train.items()}
            write_json(folder / "metrics.json", metrics | self.evaluate(r))
        return json.loads((folder / "metrics.json").read_text())


def _log_round(metrics: dict[str, Any], rounds: int) -> None:
    def number(key: str, unit: str = "") -> str:
        value = metrics.get(key)
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}{unit}"

    parts = [f"round {metrics['round']}/{rounds}"]
    if "samples/reward" in metrics:
        parts.append(f"samples' reward {number('samples/reward')} ({metrics['samples/rows']} rows)")
    if "eval/reward" in metrics:
        parts.append(f"held-out reward {number('eval/reward')}, KL to the initial model {number('eval/kl', ' nats')}")
    logger.info(" | ".join(parts))


def run_reward_loop(
    model: str,
    prompts: Dataset,
    reward_funcs: RewardFunc | str | Sequence[RewardFunc | str],
    reward_weights: Sequence[float] | None = None,
    config: RewardLoopConfig | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    eval_prompts: Dataset | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Sample, score, train, ``config.rounds`` times, from ``model`` (a local folder or Hub id) on ``prompts`` (a
    ``prompt`` column, text or messages; the other columns go to the reward functions).

    ``reward_funcs``: callables ``f(prompts, completions, **columns)`` or names (`rewards.load_reward_funcs`),
    combined by ``reward_weights``. ``eval_prompts``: held-out prompts (else ``config.eval_prompts`` of ``prompts``).
    Resumes a run in ``config.output_dir`` (see the module docstring). Returns ``output_dir``, ``model`` (the last
    policy) and ``rounds`` (each round's metrics, round 0 the initial model).
    """
    config = config or RewardLoopConfig(output_dir="outputs/reward-loop")
    if "prompt" not in prompts.column_names or len(prompts) == 0:
        raise ValueError(f"The prompts need a `prompt` column and rows (columns: {prompts.column_names}).")
    if eval_prompts is not None and config.eval_prompts is not None:
        raise ValueError("Held-out prompts given twice: pass `eval_prompts` or set `config.eval_prompts`, not both.")
    if config.eval_prompts is not None:
        prompts, eval_prompts = split_by_prompt(prompts, config.eval_prompts, seed=config.seed)
    if callable(reward_funcs) or isinstance(reward_funcs, str):
        reward_funcs = [reward_funcs]
    funcs = [f if callable(f) else load_reward_funcs([f])[0] for f in reward_funcs]
    weights = [1.0] * len(funcs) if reward_weights is None else [float(w) for w in reward_weights]
    if len(weights) != len(funcs):
        raise ValueError(f"{len(weights)} reward weights for {len(funcs)} reward functions: give one per function.")
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:  # batched sampling pads (the trainers would do the same)
        tokenizer.pad_token = tokenizer.eos_token

    output_dir = Path(config.output_dir)
    record = {
        "config": asdict(config),
        "targets": config.targets(),
        "model": str(model),
        "reward_funcs": [reward_name(f) for f in funcs],
        "reward_weights": weights,
        "prompts": {"rows": len(prompts), "sha256": digest(prompts)},
        "eval_prompts": None if eval_prompts is None else {"rows": len(eval_prompts), "sha256": digest(eval_prompts)},
    }
    check_run(output_dir, record, overwrite)
    loop = _Loop(str(model), prompts, funcs, weights, config, tokenizer, eval_prompts)
    history = []
    for r in range(config.rounds + 1):
        history.append(loop.round(r))
        _log_round(history[-1], config.rounds)
    write_json(output_dir / "results.json", {"rounds": history})
    return {"output_dir": str(output_dir), "model": loop.policy(config.rounds), "rounds": history}
