"""The reward-KL frontier (issue 21): the DPO paper's controlled-sentiment protocol (Rafailov et al. 2023, fig. 2),
sized for 2 CPU cores.

    python benchmarks/reward_frontier.py --seed 0            # one seed of the default grid, about 80 minutes
    python benchmarks/reward_frontier.py --seed 1            # another seed (a killed run resumes where it stopped)
    python benchmarks/reward_frontier.py --combine           # every seed's JSON -> reward-frontier.md / .png
    OMP_NUM_THREADS=1 python benchmarks/reward_frontier.py --smoke --threads 1   # tiny end-to-end check, ~30 s

Protocol. SmolLM2-135M-Instruct (`default_model_path()`, float32 on the CPU) is asked for short movie reviews
(`trl_ulma.demo.review_prompts`: "Write a two-sentence review of the movie {title}." over 100 invented titles), split
by ``--seed`` into ``--train_prompts`` (40) and ``--eval_prompts`` (40) disjoint prompts. The reward is VADER's
compound sentiment (`trl_ulma.rewards.vader_sentiment`, in [-1, 1]). Sampling is pure: temperature 1, top_p 1 and
top_k 0. transformers' `generate` otherwise keeps only the top 50 tokens, so the samples would not come from the
policy and the sample KL would be biased; the base folder used here (``--output_dir/base-model``) is the model's with
``do_sample: true, top_k: 0`` in its generation config, which every trained model inherits (GRPO: ``top_k=0``).

Shared data: K = ``--num_generations`` (4) samples per training prompt from the base model (``--max_new_tokens`` 40),
scored once; `reward_targets.reward_rows` maps them to point-wise rows (scores in [0, 1], each prompt's best 1.0).
Every offline method trains on these same samples, in the form it takes:

    rft            SFT on each prompt's best sample (`baselines.train_sft`); its strength is the learning rate
    dpo            TRL DPO on one pair per prompt: its best sample against its worst (`baselines.train_dpo`)
    kto            TRL KTO on binarised rewards: above the prompt's mean reward = desirable, with class weights that
                   make the weighted desirable : undesirable count 7 : 6 (inside the [1, 4/3] KTOTrainer asks for)
    unlikelihood   `UnlikelihoodTrainer` (no reference): each prompt's best sample up, the others down (its default
                   sequence form and per-group mean); its strength is the learning rate
    pointwise_dpo  point-wise DPO on the scores, each prompt's mean score as its baseline (``score_baseline="prompt"``),
                   the trainer's defaults on scores: per-token means, ``score_scale="auto"`` (one standard deviation
                   of reward asks for one nat per token, whatever beta), each prompt's best scored 1.0
    ulma           ULMA on the scores, each prompt's best sample the positive (ULMAConfig's defaults otherwise, as
                   in the reward loop before it fitted rewards in their own units)
    pointwise_dpo_reward  point-wise DPO on the rewards in their own units, as the reward loop fits them: summed
                   log-probs, ``score_scale`` the reward range, no positives, each prompt's mean reward its baseline,
                   so beta * log(pi / pi_ref) is fitted to r - V(x) and beta sets the KL
    ulma_reward    ULMA the same way (each prompt's best sample the positive)
    ulma_rounds    `run_reward_loop`: ``--rounds`` (2) rounds of sample K per prompt / score / train ULMA, the
                   reference the initial model, on the targets of ``ulma`` (``score_scale="auto"``, per-token means);
                   round 1 draws its own samples (seed + 1)
    ulma_rounds_previous  the same with the previous round's model as the reference (``reference="previous"``)
    pointwise_dpo_rounds  the loop at its defaults with point-wise DPO: the targets of ``pointwise_dpo_reward``
    ulma_rounds_reward    the loop at its defaults with ULMA: the targets of ``ulma_reward``
    grpo           TRL GRPO online with the same reward, ``num_generations`` = K, a batch of 2 prompts x K, as many
                   steps as make it generate as many completions as ulma_rounds (2 x 40 x 4 = 320: 40 steps)

Strengths: ``--betas`` (0.1 0.5) for every method but rft and unlikelihood (the KL coefficient; for GRPO its
per-token KL penalty), ``--lrs`` (1e-5 3e-5) for those two. Training: ``--learning_rate`` 1e-5, ``--epochs`` 2,
batch 8, ``max_length`` 128, no gradient checkpointing, ``--seed``.

Evaluation of each policy and of the base, on the held-out prompts: ``--eval_samples`` (2) samples per prompt with
one seed for every policy (12345 + ``--seed``: common random numbers); mean reward (± standard error),
KL(pi || pi_base) from the samples' exact ids (`sampling.sample_kl`), perplexity of the samples under the base model
(fluency, `evaluation.perplexity`), repeated 3-grams, distinct 3-grams, mean length in tokens and the share ending
with EOS.
Per job also the completions generated for training (offline: N_train x K; rounds: rounds x N_train x K; GRPO:
from its config) and the wall time of data + training (the shared sampling counted in every offline method; the
rounds' and GRPO's own generation in theirs). The report adds each method's reward at KL values shared by all
methods and its KL at shared reward levels, by linear interpolation along its frontier (the base at KL 0 included).

Files: ``--output_dir/seed{S}/`` (runs/reward-frontier) holds the base model's samples and evaluation and one folder
per job, ``{method}-{strength}/result.json``; a rerun skips what is done and takes the jobs of an existing results
file of the same settings (another session's run folder may be gone), so a run of a few methods adds them to the
file; ``--rerun`` runs the selected jobs again (each job's folder is deleted just before it runs, its earlier result
replaced when the seed's file is written at the end). A job's trained model is deleted once evaluated
(``--keep_models`` keeps it). Results: ``benchmarks/results/reward-frontier-seed{S}.json`` / ``.md`` / ``.png``;
``--combine`` writes ``reward-frontier.md`` / ``.png`` (means over seeds, ± their standard deviation, and how many
seeds each row has).

Time on 2 cores (measured per training step at batch 8: ULMA and point-wise DPO 3.7 s, rft 6 s, KTO 10 s, DPO 16 s
on pairs, GRPO 14 s with its generation; 0.4 s per sample of 40 tokens): about 80 minutes per seed, of which GRPO
2 x 10 min (40 steps), ulma_rounds 2 x 8.5 (2 x 160 samples, 2 x 40 steps), KTO 2 x 7.5 (40 steps), DPO 2 x 3.5
(10 steps), point-wise DPO and ULMA 2 x 3.5 each (40 steps), rft 2 x 2 (10 steps), about 1 min per evaluation (80
samples) included; the reward-unit methods add about 40 (offline 2 x 2 x 3, in rounds 2 x 2 x 6.5), unlikelihood and
ulma_rounds_previous about 12: about 2 hours for every method. The progress lines print the elapsed time and what is left, rescaled by the jobs already run.
"""

import argparse
import gc
import itertools
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from trl import GRPOConfig, GRPOTrainer

from trl_ulma import baselines
from trl_ulma.data import prompt_key
from trl_ulma.default_models import default_model_path
from trl_ulma.demo import review_prompts
from trl_ulma.evaluation import as_completion, perplexity
from trl_ulma.reward_loop import RewardLoopConfig, run_reward_loop
from trl_ulma.reward_targets import reward_rows
from trl_ulma.rewards import vader_sentiment
from trl_ulma.sampling import (
    GenerationSettings,
    distinct_ngrams,
    repetition_rate,
    sample_completions,
    sample_kl,
)

METHODS = (
    "rft", "dpo", "kto", "unlikelihood", "pointwise_dpo", "ulma", "pointwise_dpo_reward", "ulma_reward",
    "ulma_rounds", "ulma_rounds_previous", "pointwise_dpo_rounds", "ulma_rounds_reward", "grpo",
)
OFFLINE = ("rft", "dpo", "kto", "unlikelihood", "pointwise_dpo", "ulma", "pointwise_dpo_reward", "ulma_reward")
STD_UNITS = {"score_scale": "auto", "length_normalize": True}  # the trainers' targets on scores, for the older methods
ROUNDS = {  # method: the loop's trainer, the later rounds' reference, the training fields over the loop's defaults
    "ulma_rounds": ("ulma", "initial", STD_UNITS),
    "ulma_rounds_previous": ("ulma", "previous", STD_UNITS),
    "pointwise_dpo_rounds": ("pointwise_dpo", "initial", {}),
    "ulma_rounds_reward": ("ulma", "initial", {}),
}
SWEPT_BY_RATE = ("rft", "unlikelihood")  # no beta: their strength is the learning rate (--rft_lrs)
EVAL_SEED = 12345  # + the run's seed: held-out samples drawn with the same seed for every policy
KTO_BALANCE = 7 / 6  # weighted desirable / undesirable count, inside KTOTrainer's [1, 4/3]
GENERATION_BATCH = 16
# Seconds per training step on SmolLM2-135M, 2 CPU cores, batch 8 (measured: 4-step runs; GRPO's includes its
# generation of 8 completions of 40 tokens), for the plan; the progress lines rescale it by the jobs already run
STEP_SECONDS = {"rft": 6.0, "dpo": 16.0, "kto": 10.0, "unlikelihood": 3.0, "pointwise_dpo": 3.7, "ulma": 3.7}
STEP_SECONDS |= {"pointwise_dpo_reward": 3.7, "ulma_reward": 3.7, "grpo": 14.0} | dict.fromkeys(ROUNDS, 3.7)
SAMPLE_SECONDS = 0.4  # per sample of 40 tokens, batches of 16 (the loop's of 64: about 0.2; its plan is long)
JOB_OVERHEAD = 15.0  # loading, tokenising, saving
SMOKE = {  # --smoke: the tiny offline model, a few prompts, 2 steps per training
    "train_prompts": 6,
    "eval_prompts": 4,
    "num_generations": 4,  # with 24 tokens, enough of the random model's samples hit a VADER word to vary
    "max_new_tokens": 24,
    "eval_samples": 2,
    "batch_size": 8,
    "max_steps": 2,
    "betas": [0.1, 0.5],
    "rft_lrs": [1e-3],
    "learning_rate": 1e-3,
    "output_dir": str(ROOT / "runs/reward-frontier-smoke"),
    "results_dir": None,  # the output_dir
}


@dataclass
class Protocol:
    """What a seed's results depend on; a rerun in the same folder must match it."""

    model: str
    seed: int
    train_prompts: int
    eval_prompts: int
    num_generations: int
    max_new_tokens: int
    eval_samples: int
    learning_rate: float
    epochs: int
    batch_size: int
    max_length: int
    logging_steps: int
    rounds: int
    max_steps: int | None
    grpo_steps: int

    def generation(self, seed: int) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            max_prompt_length=256,
            batch_size=GENERATION_BATCH,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            seed=seed,
        )


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------
def write_json(path: Path, value: Any) -> None:
    """Atomically: a killed run leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def suffixed(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def strength_label(method: str, strength: float) -> str:
    return f"lr={strength:g}" if method in SWEPT_BY_RATE else f"β={strength:g}"


def earlier_payload(results_file: Path, protocol: Protocol) -> dict[str, Any] | None:
    """The payload of ``results_file`` if it exists and holds results of ``protocol``."""
    if not results_file.exists():
        return None
    payload = read_json(results_file)
    same = all(payload["settings"].get(key) == value for key, value in asdict(protocol).items())
    return payload if same else None


def job_name(method: str, strength: float) -> str:
    return f"{method}-{strength:g}"


def pure_sampling_copy(source: Path, target: Path) -> Path:
    """``source``'s model folder with ``do_sample: true, top_k: 0`` in its generation config (links to its other
    files), so that `generate` samples from the model itself at temperature 1 instead of from its top 50 tokens."""
    if (target / "generation_config.json").exists():
        return target
    staging = target.with_name(target.name + ".tmp")
    remove(staging)
    staging.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "generation_config.json":
            (staging / item.name).symlink_to(item.resolve())
    try:
        generation = GenerationConfig.from_pretrained(source)
    except OSError:
        generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(source))
    generation.do_sample, generation.top_k = True, 0  # (transformers refuses top_k without do_sample)
    generation.save_pretrained(staging)
    os.replace(staging, target)
    return target


def load_policy(path: str | Path):
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    model.generation_config.top_k = 0  # pure sampling (the saved config says so too)
    return model.to("cuda" if torch.cuda.is_available() else "cpu")


def split_prompts(seed: int, n_train: int, n_eval: int) -> tuple[list, list]:
    """Disjoint training and held-out prompts (one user message each), drawn from the 100 titles with ``seed``."""
    prompts = review_prompts(100)["prompt"]
    if n_train + n_eval > len(prompts):
        raise ValueError(f"--train_prompts + --eval_prompts must be at most {len(prompts)}, got {n_train + n_eval}.")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    return [prompts[i] for i in order[:n_train]], [prompts[i] for i in order[n_train : n_train + n_eval]]


# --------------------------------------------------------------------------------------------------------------------
# Data each offline method trains on, from the shared samples
# --------------------------------------------------------------------------------------------------------------------
def point_rows(samples: list[dict[str, Any]], positives: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    rows, report = reward_rows(
        [s["prompt"] for s in samples], [s["completion"] for s in samples], [s["reward"] for s in samples], positives
    )
    return rows, asdict(report)


def best_worst_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One DPO pair per prompt: its highest-reward sample chosen, its lowest-reward one rejected."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(prompt_key(row["prompt"]), []).append(row)
    return [
        {
            "prompt": group[0]["prompt"],
            "chosen": max(group, key=lambda r: r["reward"])["completion"],
            "rejected": min(group, key=lambda r: r["reward"])["completion"],
        }
        for group in groups.values()
    ]


def kto_weights(rows: list[dict[str, Any]]) -> dict[str, float]:
    """KTO's class weights for the rows labelled by ``score >= 1`` (above their prompt's mean)."""
    desirable = sum(row["score"] >= 1.0 for row in rows)
    undesirable = len(rows) - desirable
    if not desirable or not undesirable:
        raise ValueError(f"KTO needs both classes: {desirable} desirable and {undesirable} undesirable rows.")
    return {"desirable_weight": KTO_BALANCE * undesirable / desirable, "undesirable_weight": 1.0}


# --------------------------------------------------------------------------------------------------------------------
# The benchmark of one seed
# --------------------------------------------------------------------------------------------------------------------
class Frontier:
    """One seed's shared samples, trainings and evaluations, cached in ``run_dir``."""

    def __init__(self, protocol: Protocol, run_dir: Path, keep_models: bool = False):
        self.p, self.dir, self.keep_models = protocol, run_dir, keep_models
        self.tokenizer = AutoTokenizer.from_pretrained(protocol.model)
        self.train_prompts, self.eval_prompts = split_prompts(
            protocol.seed, protocol.train_prompts, protocol.eval_prompts
        )
        self._base = None
        self._check_settings()

    def _check_settings(self) -> None:
        path, settings = self.dir / "settings.json", asdict(self.p)
        if path.exists() and (old := read_json(path)) != settings:
            changed = sorted(key for key in settings if old.get(key) != settings[key])
            raise ValueError(
                f"{self.dir} holds a run with other settings (changed: {', '.join(changed)}): use another "
                "--output_dir or --seed, or the same settings to resume it."
            )
        write_json(path, settings)

    @property
    def base(self):
        if self._base is None:
            self._base = load_policy(self.p.model)
        return self._base

    # Shared samples ------------------------------------------------------------------------------------------------
    def shared_samples(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """K samples per training prompt from the base model, scored (cached)."""
        folder = self.dir / "shared"
        if (folder / "shared.json").exists():
            return read_json(folder / "samples.json"), read_json(folder / "shared.json")
        start = time.perf_counter()
        prompts = [p for p in self.train_prompts for _ in range(self.p.num_generations)]
        settings = self.p.generation(self.p.seed)
        drawn = sample_completions(self.base, self.tokenizer, prompts, settings, "shared samples")
        completions = [as_completion(p, s.text) for p, s in zip(prompts, drawn, strict=True)]
        rewards = vader_sentiment(prompts, completions)
        samples = [
            {"prompt": p, "completion": c, "completion_ids": s.completion_ids, "eos": s.eos, "reward": r}
            for p, c, s, r in zip(prompts, completions, drawn, rewards, strict=True)
        ]
        meta = {"samples": len(samples), "mean_reward": statistics.fmean(rewards)}
        meta["seconds"] = time.perf_counter() - start
        write_json(folder / "samples.json", samples)
        write_json(folder / "shared.json", meta)
        return samples, meta

    def offline_data(self, method: str) -> tuple[Dataset, dict[str, Any], dict[str, Any]]:
        """The training data of an offline method, its extra config fields, and its counts."""
        samples, _ = self.shared_samples()
        positives = {"kto": "above_mean", "pointwise_dpo_reward": "none"}.get(method, "best")
        rows, report = point_rows(samples, positives)
        extra: dict[str, Any] = {}
        if method == "rft":
            count = report["positives"]
        elif method == "dpo":
            pairs = best_worst_pairs(rows)
            return Dataset.from_list(pairs), extra, {"rows": len(pairs), "rows_report": report}
        elif method == "kto":
            extra = kto_weights(rows)
            count = len(rows)
        elif method == "unlikelihood":
            extra = {"score_type": "continuous"}  # each prompt's best up (positive_threshold 1.0), the others down
            count = len(rows)
        else:
            extra = {"score_type": "continuous"}
            if method.startswith("pointwise_dpo"):
                extra["score_baseline"] = "prompt"
            if method.endswith("_reward"):  # the reward loop's targets (`reward_loop.RewardLoopConfig.training_args`)
                extra |= {"score_scale": report["reward_max"] - report["reward_min"], "length_normalize": False}
            count = len(rows)
        return Dataset.from_list(rows), extra, {"rows": count, "rows_report": report}

    # Training ------------------------------------------------------------------------------------------------------
    def trainer_fields(self, **extra) -> dict[str, Any]:
        """The fields every training shares."""
        fields = {
            "per_device_train_batch_size": self.p.batch_size,
            "num_train_epochs": self.p.epochs,
            "logging_steps": self.p.logging_steps,
            "gradient_checkpointing": False,
            "use_cpu": not torch.cuda.is_available(),
            "bf16": False,
            "report_to": "none",
            "save_strategy": "no",
            "disable_tqdm": True,
            "seed": self.p.seed,
        }
        if self.p.max_steps:
            fields["max_steps"] = self.p.max_steps
        return fields | extra

    def train_offline(self, method: str, strength: float, job_dir: Path) -> dict[str, Any]:
        data, extra, counts = self.offline_data(method)
        fields = {"max_length": self.p.max_length, "learning_rate": self.p.learning_rate} | extra
        fields = fields | ({"learning_rate": strength} if method in SWEPT_BY_RATE else {"beta": strength})
        train = {
            "rft": baselines.train_sft,
            "dpo": baselines.train_dpo,
            "kto": baselines.train_kto,
            "unlikelihood": baselines.train_unlikelihood,
            "pointwise_dpo": baselines.train_pointwise_dpo,
            "ulma": baselines.train_ulma,
            "pointwise_dpo_reward": baselines.train_pointwise_dpo,
            "ulma_reward": baselines.train_ulma,
        }[method]
        model_dir = job_dir / "model"
        remove(model_dir)
        train(self.p.model, data, str(model_dir), processing_class=self.tokenizer, **self.trainer_fields(**fields))
        _, shared = self.shared_samples()
        state = read_json(model_dir / "trainer_state.json")
        return counts | {
            "models": [model_dir],
            "config": extra,
            "steps": state["global_step"],
            "completions_generated": self.p.train_prompts * self.p.num_generations,
            "data_seconds": shared["seconds"],
            "log": state["log_history"],
        }

    def train_rounds(self, method: str, strength: float, job_dir: Path) -> dict[str, Any]:
        trainer, reference, targets = ROUNDS[method]
        training = self.trainer_fields(beta=strength, learning_rate=self.p.learning_rate, max_length=self.p.max_length)
        training.pop("seed")  # the loop's
        config = RewardLoopConfig(
            output_dir=str(job_dir / "loop"),
            rounds=self.p.rounds,
            num_generations=self.p.num_generations,
            trainer=trainer,
            reference=reference,
            positives=None,  # the loop's: each prompt's best for ULMA, none for point-wise DPO
            max_new_tokens=self.p.max_new_tokens,
            seed=self.p.seed,
            training=training | targets,
        )
        prompts = Dataset.from_list([{"prompt": p} for p in self.train_prompts])
        result = run_reward_loop(self.p.model, prompts, vader_sentiment, config=config, tokenizer=self.tokenizer)
        rounds = result["rounds"][1:]
        folders = [job_dir / "loop" / f"round_{r['round']}" / "model" for r in rounds]
        states = [read_json(folder / "trainer_state.json") for folder in folders]
        return {
            "models": folders,
            "final_model": result["model"],
            "rows": sum(r["samples/rows"] for r in rounds),
            "steps": sum(state["global_step"] for state in states),
            "completions_generated": self.p.rounds * self.p.train_prompts * self.p.num_generations,
            "generation_batch_size": config.generation_batch_size,  # the loop's default (16 before 2026-12-08)
            "rounds": [{k: v for k, v in r.items() if k.startswith(("samples/", "train/"))} for r in rounds],
            "log": [state["log_history"] for state in states],
        }

    def train_grpo(self, strength: float, job_dir: Path) -> dict[str, Any]:
        model_dir = job_dir / "model"
        remove(model_dir)
        fields = self.trainer_fields(max_steps=self.p.grpo_steps)
        args = GRPOConfig(
            output_dir=str(model_dir),
            num_generations=self.p.num_generations,
            max_completion_length=self.p.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            beta=strength,
            learning_rate=self.p.learning_rate,
            **fields,
        )
        trainer = GRPOTrainer(
            self.p.model,
            reward_funcs=[vader_sentiment],
            args=args,
            train_dataset=Dataset.from_list([{"prompt": p} for p in self.train_prompts]),
            processing_class=self.tokenizer,
        )
        trainer.train()
        trainer.save_model(str(model_dir))
        steps, log = trainer.state.global_step, trainer.state.log_history
        del trainer
        free_memory()
        generations = math.ceil(args.max_steps / args.steps_per_generation)
        return {
            "models": [model_dir],
            "rows": None,
            "steps": steps,
            "completions_generated": generations * args.generation_batch_size,
            "log": log,
        }

    # Evaluation ----------------------------------------------------------------------------------------------------
    def evaluate(self, policy) -> dict[str, Any]:
        """Held-out figures of ``policy`` (the base model itself for the base)."""
        prompts = [p for p in self.eval_prompts for _ in range(self.p.eval_samples)]
        settings = self.p.generation(EVAL_SEED + self.p.seed)
        drawn = sample_completions(policy, self.tokenizer, prompts, settings, "held-out samples")
        completions = [as_completion(p, s.text) for p, s in zip(prompts, drawn, strict=True)]
        rewards = vader_sentiment(prompts, completions)
        ids = [s.completion_ids for s in drawn]
        if policy is self.base:
            kls = [0.0] * len(drawn)
        else:
            _, kls = sample_kl(policy, self.base, self.tokenizer, [s.prompt_ids for s in drawn], ids, GENERATION_BATCH)
        rows = [{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)]
        reward, reward_se = mean_se(rewards)
        kl, kl_se = mean_se(kls)
        return {
            "reward": reward,
            "reward_se": reward_se,
            "kl": kl,
            "kl_se": kl_se,
            "perplexity": perplexity(self.base, self.tokenizer, rows, batch_size=GENERATION_BATCH),
            "repetition": repetition_rate(ids),
            "distinct_3": distinct_ngrams(ids),
            "length": statistics.fmean(map(len, ids)),
            "eos": statistics.fmean(s.eos for s in drawn),
            "examples": [s.text for s in drawn[:: max(1, len(drawn) // 4)][:4]],
        }

    def base_result(self) -> dict[str, Any]:
        path = self.dir / "base" / "result.json"
        if not path.exists():
            start = time.perf_counter()
            metrics = self.evaluate(self.base)
            write_json(path, {"method": "base", "metrics": metrics, "eval_seconds": time.perf_counter() - start})
        return read_json(path)

    def restore(self, earlier: list[dict[str, Any]]) -> None:
        """Write the ``earlier`` jobs of a results file of this protocol (another session's run folder may be gone)
        back to the run folder where they are missing, so that they count as done."""
        for result in earlier:
            if not (path := self.job_path(result["method"], result["strength"])).exists():
                write_json(path, result)

    # Jobs ----------------------------------------------------------------------------------------------------------
    def job_path(self, method: str, strength: float) -> Path:
        return self.dir / job_name(method, strength) / "result.json"

    def run_job(self, method: str, strength: float) -> dict[str, Any]:
        """Train one (method, strength), evaluate it, write its result.json, delete its model(s)."""
        job_dir = self.job_path(method, strength).parent
        job_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if method in OFFLINE:
            info = self.train_offline(method, strength, job_dir)
        elif method in ROUNDS:
            info = self.train_rounds(method, strength, job_dir)
        else:
            info = self.train_grpo(strength, job_dir)
        train_seconds = time.perf_counter() - start
        free_memory()
        start = time.perf_counter()
        policy = load_policy(info.pop("final_model", info["models"][-1]))
        metrics = self.evaluate(policy)
        del policy
        free_memory()
        models = info.pop("models")
        result = {
            "method": method,
            "strength": strength,
            "label": strength_label(method, strength),
            "metrics": metrics,
            "train_seconds": train_seconds,
            "wall_seconds": train_seconds + info.pop("data_seconds", 0.0),
            "eval_seconds": time.perf_counter() - start,
        } | info
        write_json(self.job_path(method, strength), result)
        if not self.keep_models:
            for folder in models:
                remove(Path(folder))
        return result

    # The plan ------------------------------------------------------------------------------------------------------
    def planned_seconds(self, method: str) -> float:
        """A job's time on SmolLM2 and 2 cores, for the progress estimate (`STEP_SECONDS`)."""
        p, rows = self.p, self.p.train_prompts * self.p.num_generations

        def steps(n: int) -> int:
            return p.max_steps or math.ceil(n / p.batch_size) * p.epochs

        evaluation = p.eval_prompts * p.eval_samples * SAMPLE_SECONDS * 1.3  # + KL and perplexity forwards
        if method in ROUNDS:
            train = p.rounds * (rows * SAMPLE_SECONDS + steps(rows) * STEP_SECONDS[method] + JOB_OVERHEAD)
        elif method == "grpo":
            train = p.grpo_steps * STEP_SECONDS[method]
        else:
            n = {"rft": p.train_prompts, "dpo": p.train_prompts}.get(method, rows)
            train = steps(n) * STEP_SECONDS[method]
        return train + evaluation + JOB_OVERHEAD


class Progress:
    """Per job: its time, the time elapsed, and what is left (the plan rescaled by the jobs run so far)."""

    def __init__(self, planned: dict[str, float]):
        self.planned, self.total, self.start = dict(planned), len(planned), time.perf_counter()
        self.spent = self.done_planned = 0.0

    def left(self) -> float:
        scale = self.spent / self.done_planned if self.done_planned else 1.0
        return scale * sum(self.planned.values())

    def finish(self, label: str, seconds: float, status: str = "done") -> None:
        planned = self.planned.pop(label, 0.0)
        if status == "done":
            self.spent, self.done_planned = self.spent + seconds, self.done_planned + planned
        elapsed = time.perf_counter() - self.start
        print(
            f"[{self.total - len(self.planned)}/{self.total}] {label}: {status} in {minutes(seconds)} | "
            f"elapsed {minutes(elapsed)} | left ~{minutes(self.left())}",
            flush=True,
        )


# --------------------------------------------------------------------------------------------------------------------
# The frontier: interpolation, tables, plot
# --------------------------------------------------------------------------------------------------------------------
METRIC_COLUMNS = {  # key: (column title, format)
    "reward": ("reward ↑", None),
    "kl": ("KL to base (nats)", "{:.2f}"),
    "perplexity": ("perplexity under base", "{:.2f}"),
    "repetition": ("repeated 3-grams", "{:.3f}"),
    "distinct_3": ("distinct 3-grams", "{:.3f}"),
    "length": ("length (tokens)", "{:.1f}"),
    "eos": ("ended", "{:.2f}"),
}


def curve(points: list[tuple[float, float]], base: tuple[float, float]) -> list[tuple[float, float]]:
    """A method's frontier: its (KL, reward) points and the base's, by KL."""
    return sorted([base, *points])


def reward_at(points: list[tuple[float, float]], kl: float) -> float | None:
    """The reward at ``kl`` by linear interpolation along the curve (None outside it)."""
    for (k0, r0), (k1, r1) in itertools.pairwise(points):
        if k0 <= kl <= k1:
            return r0 if k1 == k0 else r0 + (kl - k0) / (k1 - k0) * (r1 - r0)
    return None


def kl_at(points: list[tuple[float, float]], reward: float) -> float | None:
    """The smallest KL at which the curve reaches ``reward`` (linear interpolation; None if it never does)."""
    if points[0][1] >= reward:
        return points[0][0]
    for (k0, r0), (k1, r1) in itertools.pairwise(points):
        if r0 < reward <= r1:
            return k0 + (reward - r0) / (r1 - r0) * (k1 - k0)
    return None


def matched(results: list[dict[str, Any]], base: dict[str, float], n: int = 3) -> dict[str, Any]:
    """Each method's reward at KL values all the methods reach, and its KL at reward levels all of them reach."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        curves.setdefault(result["method"], []).append((result["metrics"]["kl"], result["metrics"]["reward"]))
    curves = {m: curve(points, (0.0, base["reward"])) for m, points in curves.items()}
    if not curves:
        return {"kl": [], "reward_at_kl": {}, "reward": [], "kl_at_reward": {}}
    kl_top = min(max(k for k, _ in points) for points in curves.values())
    reward_top = min(max(r for _, r in points) for points in curves.values())
    kls = [float(f"{kl_top * (i + 1) / n:.3g}") for i in range(n)] if kl_top > 0 else []
    gap = reward_top - base["reward"]
    levels = [float(f"{base['reward'] + gap * (i + 1) / n:.3g}") for i in range(n)] if gap > 0 else []
    return {
        "kl": kls,
        "reward_at_kl": {m: [reward_at(points, k) for k in kls] for m, points in curves.items()},
        "reward": levels,
        "kl_at_reward": {m: [kl_at(points, r) for r in levels] for m, points in curves.items()},
    }


def cell(value: float | None, spec: str = "{:.3f}", spread: float | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = spec.format(value)
    return text if spread is None or not math.isfinite(spread) else f"{text} ± {spec.format(spread)}"


def results_table(rows: list[dict[str, Any]], spread_key: str) -> str:
    """One line per (method, strength), the base first. ``spread_key``: the suffix of the reward's spread (``_se``
    for one seed, ``_std`` over seeds)."""
    titles = [title for title, _ in METRIC_COLUMNS.values()]
    titles[0] += " ± se" if spread_key == "_se" else " ± std"
    header = ["method", "strength", *titles, "completions", "wall time"] + (["seeds"] if spread_key == "_std" else [])
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for row in rows:
        m = row["metrics"]
        cells = [row["method"], row.get("label", "")]
        for key, (_, spec) in METRIC_COLUMNS.items():
            if spec is None:
                cells.append(cell(m[key], "{:.3f}", m.get(key + spread_key)))
            else:
                cells.append(cell(m[key], spec, m.get(key + "_std") if spread_key == "_std" else None))
        generated = row.get("completions_generated")
        cells.append("" if generated is None else str(generated))
        wall = row.get("wall_seconds")
        cells.append("" if wall is None else minutes(wall))
        if spread_key == "_std":
            cells.append(str(row.get("seeds", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def matched_tables(match: dict[str, Any]) -> str:
    parts = []
    if match["kl"]:
        header = "| method | " + " | ".join(f"reward at KL {k:g}" for k in match["kl"]) + " |"
        lines = [header, "|---|" + "---:|" * len(match["kl"])]
        lines += [
            f"| {m} | " + " | ".join(cell(v) for v in values) + " |" for m, values in match["reward_at_kl"].items()
        ]
        parts.append("\n".join(lines))
    else:
        parts.append("Reward at matched KL: n/a (some method never moved away from the base).")
    if match["reward"]:
        header = "| method | " + " | ".join(f"KL at reward {r:g}" for r in match["reward"]) + " |"
        lines = [header, "|---|" + "---:|" * len(match["reward"])]
        lines += [
            f"| {m} | " + " | ".join(cell(v, "{:.2f}") for v in values) + " |"
            for m, values in match["kl_at_reward"].items()
        ]
        parts.append("\n".join(lines))
    else:
        parts.append("KL at matched reward: n/a (some method never beat the base's reward).")
    return "\n\n".join(parts)


def plot_frontier(rows: list[dict[str, Any]], base: dict[str, Any], path: Path, title: str) -> None:
    """Reward against KL, one curve per method from the base (KL 0), its points labelled by strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(9, 6))
    colors = plt.get_cmap("tab20")
    b = base["metrics"]
    for i, method in enumerate(dict.fromkeys(row["method"] for row in rows)):
        mine = sorted((row for row in rows if row["method"] == method), key=lambda row: row["metrics"]["kl"])
        kls = [0.0] + [row["metrics"]["kl"] for row in mine]
        rewards = [b["reward"]] + [row["metrics"]["reward"] for row in mine]
        ax.plot(kls, rewards, "-", color=colors(i), alpha=0.6)
        for row in mine:
            m = row["metrics"]
            ax.errorbar(
                m["kl"],
                m["reward"],
                xerr=m.get("kl_std"),
                yerr=m.get("reward_std", m.get("reward_se")),
                fmt="o",
                color=colors(i),
                label=method if row is mine[0] else None,
            )
            ax.annotate(row["label"], (m["kl"], m["reward"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.errorbar(0.0, b["reward"], yerr=b.get("reward_std", b.get("reward_se")), fmt="*", color="black", ms=12)
    ax.annotate("base", (0.0, b["reward"]), fontsize=8, xytext=(4, -10), textcoords="offset points")
    ax.set(xlabel="KL(π || π_base), nats per sample (held-out samples)", ylabel="mean VADER reward", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def cuts(args: argparse.Namespace, protocol: Protocol, results: list[dict[str, Any]]) -> list[str]:
    """What this run leaves out of the DPO paper's protocol, to fit 2 CPU cores."""
    p = protocol
    model = "the tiny random test model (--smoke)" if args.smoke else "SmolLM2-135M-Instruct"
    steps: dict[str, set[int]] = {}
    for result in results:
        steps.setdefault(result["method"], set()).add(result["steps"])
    steps_text = ", ".join(f"{m} {'/'.join(map(str, sorted(n)))}" for m, n in steps.items())
    sweep_text = ", ".join(f"{r['method']} {r['label']}" for r in results)
    lines = [
        (
            f"Model: {model} instead of GPT-2 large fine-tuned on IMDb; prompts: review requests for "
            f"{p.train_prompts} (training) and {p.eval_prompts} (held-out) invented titles instead of IMDb prefixes."
        ),
        "Reward: the VADER lexicon instead of a learned sentiment classifier.",
        (
            f"Data: K = {p.num_generations} samples per training prompt ({p.train_prompts * p.num_generations} in "
            f"all), at most {p.max_new_tokens} new tokens; DPO gets one pair per prompt (best vs worst)."
        ),
        (
            f"Training: {p.epochs} epochs at batch {p.batch_size}, learning rate {p.learning_rate:g}, no tuning per "
            f"method beyond the strength sweep; steps: {steps_text or 'none run'}."
        ),
        f"Sweep: {sweep_text or 'none run'} instead of the paper's denser sweep.",
        (
            f"RL baseline: GRPO ({p.grpo_steps} steps of {p.batch_size // p.num_generations} prompts x "
            f"{p.num_generations} completions, the same reward), not PPO (TRL 1.16 has no PPOTrainer); its β is a "
            "per-token KL penalty, not comparable one to one with DPO's β."
        ),
        (
            f"Evaluation: {p.eval_samples} samples per held-out prompt ({p.eval_prompts * p.eval_samples} in all), "
            "so the KL and reward estimates are noisy (see the standard errors); one seed per file."
        ),
    ]
    if p.max_steps:
        lines.append(f"Every training capped at {p.max_steps} steps (--max_steps).")
    if left_out := [m for m in METHODS if m not in steps]:
        lines.append(f"Methods left out: {', '.join(left_out)}.")
    return lines


def write_seed_report(payload: dict[str, Any], stem: Path) -> None:
    rows, base = payload["results"], payload["base"]
    match = payload["matched"]
    base_row = {"method": "base", "label": "", "metrics": base["metrics"]}
    notes = [f"- {line}" for line in payload["cuts"]]
    estimate = payload["estimate"]
    text = [
        f"# Reward-KL frontier, seed {payload['settings']['seed']}",
        "",
        *(f"`{command}`  " for command in payload["commands"]),
        "",
        results_table([base_row, *rows], "_se"),
        "",
        (
            "Reward at matched KL and KL at matched reward (linear interpolation along each method's frontier, the "
            "base at KL 0 included):"
        ),
        "",
        matched_tables(match),
        "",
        "## What was cut",
        "",
        *notes,
        "",
        (
            f"Time: planned {minutes(estimate['planned_seconds'])}, this session {minutes(payload['seconds'])} "
            f"(jobs run now: {estimate['jobs_run']}, taken from earlier sessions: {estimate['jobs_cached']})."
        ),
    ]
    if payload["failed"]:
        text += ["", "Failed jobs: " + ", ".join(f"{f['job']} ({f['error']})" for f in payload["failed"])]
    suffixed(stem, ".md").write_text("\n".join(text) + "\n")
    write_json(suffixed(stem, ".json"), payload)
    plot_frontier(rows, base_row, suffixed(stem, ".png"), f"Reward vs KL, seed {payload['settings']['seed']}")


# --------------------------------------------------------------------------------------------------------------------
# Combining seeds
# --------------------------------------------------------------------------------------------------------------------
def aggregate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of each metric over seeds, and its standard deviation as ``<key>_std``."""
    metrics: dict[str, float] = {}
    for key in METRIC_COLUMNS:
        values = [item["metrics"][key] for item in items]
        metrics[key] = statistics.fmean(values)
        metrics[key + "_std"] = statistics.stdev(values) if len(values) > 1 else float("nan")
    first = items[0]
    return {
        "method": first["method"],
        "label": first.get("label", ""),
        "strength": first.get("strength"),
        "metrics": metrics,
        "seeds": len(items),
        "completions_generated": first.get("completions_generated"),
        "wall_seconds": statistics.fmean(item["wall_seconds"] for item in items) if "wall_seconds" in first else None,
    }


def combine(results_dir: Path, name: str) -> None:
    files = sorted(results_dir.glob(f"{name}-seed*.json"))
    if not files:
        raise SystemExit(f"No {name}-seed*.json in {results_dir}: run the seeds first.")
    payloads = [read_json(path) for path in files]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for payload in payloads:
        for result in payload["results"]:
            groups.setdefault((result["method"], result["strength"]), []).append(result)
    rows = [aggregate(items) for items in groups.values()]
    rows.sort(key=lambda row: (METHODS.index(row["method"]), row["strength"]))
    base = aggregate([{"method": "base", "metrics": payload["base"]["metrics"]} for payload in payloads])
    seeds = [payload["settings"]["seed"] for payload in payloads]
    text = [
        f"# Reward-KL frontier, seeds {', '.join(map(str, seeds))} (mean ± standard deviation over seeds)",
        "",
        results_table([base, *rows], "_std"),
        "",
        "On the means over seeds, reward at matched KL and KL at matched reward:",
        "",
        matched_tables(matched(rows, base["metrics"])),
        "",
        "What was cut: see each seed's file (" + ", ".join(path.name for path in files) + ").",
    ]
    stem = results_dir / name
    suffixed(stem, ".md").write_text("\n".join(text) + "\n")
    plot_frontier(rows, base, suffixed(stem, ".png"), f"Reward vs KL, mean of {len(seeds)} seeds")
    print("\n".join(text))
    print(f"wrote {stem}.md and .png")


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--betas", nargs="+", type=float, default=[0.1, 0.5])
    parser.add_argument("--lrs", "--rft_lrs", dest="rft_lrs", nargs="+", type=float, default=[1e-5, 3e-5],
                        help="the strengths of rft and unlikelihood (no beta): learning rates")
    parser.add_argument("--train_prompts", type=int, default=40)
    parser.add_argument("--eval_prompts", type=int, default=40)
    parser.add_argument("--num_generations", type=int, default=4, help="K, samples per training prompt (>= 2)")
    parser.add_argument("--max_new_tokens", type=int, default=40)
    parser.add_argument("--eval_samples", type=int, default=2, help="samples per held-out prompt")
    parser.add_argument("--learning_rate", type=float, default=1e-5, help="every method but rft (its sweep)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--logging_steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="ulma_rounds' rounds (and GRPO's default budget)")
    parser.add_argument("--max_steps", type=int, help="cap every training at this many steps")
    parser.add_argument("--grpo_steps", type=int, help="default: rounds x train_prompts x K / batch_size")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--output_dir", default=str(ROOT / "runs/reward-frontier"))
    parser.add_argument("--results_dir", default=str(ROOT / "benchmarks/results"))
    parser.add_argument("--keep_models", action="store_true", help="keep each trained model after its evaluation")
    parser.add_argument("--smoke", action="store_true", help="the tiny offline model, a few prompts, 2 steps each")
    parser.add_argument("--combine", action="store_true", help="combine the seeds' JSON files in --results_dir")
    parser.add_argument("--rerun", action="store_true", help="run the selected jobs again, replacing their results")
    parser.add_argument("--report_only", action="store_true",
                        help="write the seed's report from the jobs already done, running none (the rest: 'not run')")
    args, _ = parser.parse_known_args(argv)
    if args.smoke:
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)
    if args.results_dir is None:
        args.results_dir = args.output_dir
    if args.rerun and args.report_only:
        parser.error("--rerun runs the jobs again; --report_only runs none: give one of them")
    if args.num_generations < 2:
        parser.error("--num_generations must be >= 2 (one sample per prompt carries no preference)")
    if args.batch_size % args.num_generations:
        parser.error("--batch_size must be a multiple of --num_generations (GRPO's batch holds whole prompt groups)")
    return args


def base_model(args: argparse.Namespace, output_dir: Path) -> Path:
    """The base model's folder, with pure sampling in its generation config."""
    if args.smoke:
        from trl_ulma.testing import save_tiny_model

        source = output_dir / "tiny-model"
        if not (source / "config.json").exists():
            save_tiny_model(source)
    else:
        source = default_model_path()
    return pure_sampling_copy(source, output_dir / ("tiny-base" if args.smoke else "base-model"))


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    prefix = "reward-frontier-smoke" if args.smoke else "reward-frontier"
    if args.combine:
        combine(Path(args.results_dir), prefix)
        return None
    torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir)
    model = base_model(args, output_dir)
    grpo_steps = args.grpo_steps or math.ceil(
        args.rounds * args.train_prompts * args.num_generations / args.batch_size
    )
    if args.max_steps and not args.grpo_steps:
        grpo_steps = args.max_steps
    protocol = Protocol(
        model=str(model),
        seed=args.seed,
        train_prompts=args.train_prompts,
        eval_prompts=args.eval_prompts,
        num_generations=args.num_generations,
        max_new_tokens=args.max_new_tokens,
        eval_samples=args.eval_samples,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        logging_steps=args.logging_steps,
        rounds=args.rounds,
        max_steps=args.max_steps,
        grpo_steps=grpo_steps,
    )
    bench = Frontier(protocol, output_dir / f"seed{args.seed}", args.keep_models)
    jobs = [(m, s) for m in args.methods for s in (args.rft_lrs if m in SWEPT_BY_RATE else args.betas)]
    results_dir = Path(args.results_dir)
    stem = results_dir / f"{prefix}-seed{args.seed}"
    previous = earlier_payload(suffixed(stem, ".json"), protocol)
    earlier = previous["results"] if previous else []
    commands = (previous.get("commands") or [previous["command"]]) if previous else []  # the older files: one
    bench.restore(earlier)
    evaluation = protocol.eval_prompts * protocol.eval_samples * SAMPLE_SECONDS * 1.3 + JOB_OVERHEAD
    planned = {  # 0 for what an earlier session did
        "base": 0.0 if (bench.dir / "base" / "result.json").exists() else evaluation,
        "shared samples": 0.0
        if (bench.dir / "shared" / "shared.json").exists()
        else protocol.train_prompts * protocol.num_generations * SAMPLE_SECONDS,
    }
    done_before = {(m, s) for m, s in jobs if bench.job_path(m, s).exists() and not args.rerun}
    planned |= {job_name(m, s): 0.0 if (m, s) in done_before else bench.planned_seconds(m) for m, s in jobs}
    cached = len(done_before)
    planned_total = sum(planned.values())
    start = time.perf_counter()
    print(
        f"seed {args.seed}: {len(jobs)} jobs ({cached} done before), plan ~{minutes(planned_total)} on SmolLM2 and "
        f"2 cores; runs in {bench.dir}",
        flush=True,
    )
    progress = Progress(planned)

    t = time.perf_counter()
    base = bench.base_result()
    progress.finish("base", time.perf_counter() - t, "done" if planned["base"] else "cached")
    t = time.perf_counter()
    bench.shared_samples()
    progress.finish("shared samples", time.perf_counter() - t, "done" if planned["shared samples"] else "cached")
    results, failed = [], []
    for method, strength in jobs:
        name, t = job_name(method, strength), time.perf_counter()
        path = bench.job_path(method, strength)
        if args.rerun:  # run again: its earlier result is replaced at the end (a loop would resume from its rounds)
            remove(path.parent)
        if path.exists():
            results.append(read_json(path))
            progress.finish(name, 0.0, "cached")
            continue
        if args.report_only:
            failed.append({"job": name, "error": "not run (--report_only: the session ran out of time)"})
            continue
        try:
            results.append(bench.run_job(method, strength))
            status = "done"
        except Exception as error:  # one failure must not lose the other jobs: it is rerun next time
            traceback.print_exc()
            first_line = (str(error).splitlines() or [""])[0][:200]
            failed.append({"job": name, "error": f"{type(error).__name__}: {first_line}"})
            status = "FAILED"
        m = results[-1]["metrics"] if status == "done" else None
        progress.finish(name, time.perf_counter() - t, status)
        if m:
            print(f"    reward {m['reward']:.3f} ± {m['reward_se']:.3f}, KL {m['kl']:.2f}, ppl {m['perplexity']:.2f}")

    done = {(result["method"], result["strength"]) for result in results}
    results += [result for result in earlier if (result["method"], result["strength"]) not in done]
    results.sort(key=lambda result: (METHODS.index(result["method"]), result["strength"]))
    command = "python benchmarks/reward_frontier.py " + " ".join(sys.argv[1:] if argv is None else argv)
    payload = {
        "command": command,
        "commands": list(dict.fromkeys([*commands, command])),
        "settings": asdict(protocol) | {"methods": sorted({r["method"] for r in results}, key=METHODS.index)},
        "cuts": cuts(args, protocol, results),
        "base": base,
        "shared": bench.shared_samples()[1],
        "results": results,
        "failed": failed,
        "matched": matched(results, base["metrics"]),
        "estimate": {"planned_seconds": planned_total, "jobs_run": len(jobs) - cached, "jobs_cached": cached},
        "seconds": time.perf_counter() - start,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    write_seed_report(payload, stem)
    print(suffixed(stem, ".md").read_text())
    print(f"wrote {stem}.json, .md and .png")
    return payload


if __name__ == "__main__":
    main()
