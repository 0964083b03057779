"""The ULMA paper's comparison in one call: train every method on the same data, evaluate, write the table.

`run_experiment(config_path)` reads a YAML config (see `experiments/*.yaml`), builds the point-wise data and splits it
by prompt into train, judge-train (optional) and held-out rows, trains each selected method from the same base model
(`trl_ulma.baselines`), trains the judge (a reward model on the judge-train pairs, or on the training pairs, seeded
apart from the RLHF one), evaluates every policy on the held-out prompts (`trl_ulma.evaluation`) and writes
``results.md``, ``results.json`` and ``results.png`` to the run directory. It logs each step with an estimate of the
time left. Re-running resumes: a method whose finished output (and evaluation) exists for the same config and data is
skipped; one whose config or data changed is trained again.

Config keys:
    name, output_dir, seed, positive_threshold (default 1.0)
    model       exactly one of ``tiny: {hidden_size, seed}`` (built offline by `trl_ulma.testing`), ``name:`` (a
                `trl_ulma.default_models` name) or ``path:`` (a local Hugging Face folder)
    data        ``source``: ``toy`` (``rows``), ``hh`` (``path`` to raw Anthropic HH or Golden HH jsonl[.gz]) or
                ``file`` (``path`` to json/jsonl[.gz] rows: point-wise, DPO pairs or KTO ``messages`` + ``label``);
                ``eval_prompts`` (a count, or a fraction < 1), optional ``judge_prompts`` (the same, of the rest:
                prompts whose rows train only the judge), optional ``train_prompts`` cap, ``seed``; optional
                ``demonstrations`` (same keys as ``data``: better answers replacing the positives of their prompts)
    training    TRL config fields given to every method whose config has them (e.g. ``learning_rate``, ``max_length``)
    methods     run name -> its own config fields, for the methods to run; a name that is not a method's names it
                with ``method:`` (e.g. ``ulma_paper: {method: ulma, score_baseline: none}``). ``base`` is the
                untrained model; the
                ``rlhf`` entry may set ``algorithm``: ``rloo``, the default, or ``ppo``: TRL 1.12's PPO in a separate
                environment, ``ppo_python`` or ``$TRL_ULMA_PPO_PYTHON``, see `baselines.train_rlhf`; it takes only
                `TrainingArguments` fields from ``training``, ``max_steps`` x batch being PPO's ``total_episodes``,
                and TRL 1.12 `PPOConfig` fields here, e.g. ``response_length``, ``kl_coef``)
    judge       optional ``model`` (default: the base model) and RewardConfig fields over the reward model's
    evaluation  `GenerationSettings` fields and ``max_length`` (perplexity and judge)
Relative paths are resolved from the working directory.
"""

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset
from datasets.fingerprint import Hasher
from transformers import AutoTokenizer, PreTrainedTokenizerFast, TrainingArguments
from trl import DPOConfig, KTOConfig, RewardConfig, RLOOConfig, SFTConfig

from . import baselines
from .baselines import pair_indices, positives, rlhf_note, scored_rows
from .data import column_names, prompt_key, split_by_prompt
from .files import load_data
from .formats import convert_to_pointwise
from .evaluation import (
    NO_TOXICITY_NOTE,
    TOXICITY_NOTE,
    GenerationSettings,
    RewardJudge,
    completion_text,
    evaluate_model,
    load_toxicity_classifier,
    pair_accuracy,
    toxicity_rate,
    win_rate,
    write_report,
)
from .pointwise_dpo_config import PointwiseDPOConfig
from .ulma_config import ULMAConfig
from .unlikelihood_config import UnlikelihoodConfig


logger = logging.getLogger(__name__)

# In training order (the reward model before RLHF, which uses it); every one but the reward model is a policy
TRAINERS: dict[str, tuple[Callable[..., str], type]] = {
    "sft": (baselines.train_sft, SFTConfig),
    "reward_model": (baselines.train_reward_model, RewardConfig),
    "rlhf": (baselines.train_rlhf, RLOOConfig),
    "dpo": (baselines.train_dpo, DPOConfig),
    "kto": (baselines.train_kto, KTOConfig),
    "unlikelihood": (baselines.train_unlikelihood, UnlikelihoodConfig),
    "pointwise_dpo": (baselines.train_pointwise_dpo, PointwiseDPOConfig),
    "ulma": (baselines.train_ulma, ULMAConfig),
}
METHODS = ("base", *TRAINERS)
CONFIG_KEYS = {
    "name",
    "output_dir",
    "seed",
    "positive_threshold",
    "model",
    "data",
    "training",
    "methods",
    "judge",
    "evaluation",
}
FINISHED = "trl_ulma_finished.json"
EVALUATED = "eval.json"
CURVE_KEYS = {"rlhf": "reward"}  # what each method's training curve plots; default "loss"


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------
def load_rows(spec: dict[str, Any]) -> Dataset:
    """Point-wise rows (``prompt``, ``completion``, ``label`` or ``score``) from a ``data`` config entry."""
    source = spec.get("source")
    if source == "toy":
        from .testing import toy_dataset

        return toy_dataset(spec.get("rows", 96), spec.get("seed", 0))
    if source not in ("hh", "file"):
        raise ValueError(f"`data.source` must be 'toy', 'hh' or 'file', got {source!r}.")
    if "path" not in spec:
        raise ValueError(f"`data.source: {source}` needs a `path`.")
    rows = load_data(spec["path"])["train"]
    return convert_to_pointwise(rows, "hh" if source == "hh" else "auto", drop_invalid=source == "hh")


def replace_positives(rows: Dataset, demonstrations: Dataset, positive_threshold: float = 1.0) -> tuple[Dataset, int]:
    """The Golden HH idea: each positive whose prompt has a demonstration gets it as its completion.

    ``demonstrations``: labelled rows (their positives are the demonstrations) or bare ``prompt`` + ``completion``
    rows (all demonstrations). Returns the rows and the number of positives replaced.
    """
    if not {"label", "score", "chosen"} & set(column_names(demonstrations)):
        demonstrations = demonstrations.map(lambda _: {"label": True})
    better = {prompt_key(row["prompt"]): row["completion"] for row in positives(demonstrations, positive_threshold)}
    scores = scored_rows(rows)["score"]
    replace = [s >= positive_threshold and prompt_key(p) in better for s, p in zip(scores, rows["prompt"], strict=True)]

    def swap(row: dict[str, Any], index: int) -> dict[str, Any]:
        return {"completion": better[prompt_key(row["prompt"])]} if replace[index] else {}

    return rows.map(swap, with_indices=True), sum(replace)


def reference_answers(rows: Dataset, positive_threshold: float = 1.0) -> list[dict[str, Any]]:
    """One ``prompt``, ``completion`` per prompt that has a positive: its best-scored one (the first on ties)."""
    best: dict[str, dict[str, Any]] = {}
    for row in scored_rows(rows):
        key = prompt_key(row["prompt"])
        if row["score"] >= positive_threshold and (key not in best or row["score"] > best[key]["score"]):
            best[key] = row
    return [{"prompt": row["prompt"], "completion": row["completion"]} for row in best.values()]


# --------------------------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------------------------
def _fingerprint(*parts: Any) -> str:
    return Hasher.hash(json.dumps(parts, sort_keys=True, default=str))


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _finished(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """What a job saved in ``path`` when it finished with this ``fingerprint``; None if it did not."""
    saved = _read_json(path)
    return saved if saved and saved["fingerprint"] == fingerprint else None


def method_of(name: str, overrides: dict[str, Any] | None) -> str:
    """The method a ``methods`` entry runs: its ``method`` field, or its name."""
    return (overrides or {}).get("method", name)


def _check_fields(where: str, settings: dict[str, Any], config_class: type, extra: set[str]) -> None:
    unknown = set(settings) - {f.name for f in fields(config_class)} - extra
    if unknown:
        raise ValueError(f"`{where}`: {sorted(unknown)} are not fields of {config_class.__name__}.")


def load_config(config_path: str | Path) -> dict[str, Any]:
    """The YAML config, checked: known keys, methods and TRL fields, one base model, valid evaluation settings."""
    with open(config_path) as file:
        config = yaml.safe_load(file) or {}
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"Unknown config keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}.")
    methods = config.setdefault("methods", {name: {} for name in METHODS})
    unknown = {method_of(name, overrides) for name, overrides in methods.items()} - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; known: {list(METHODS)}.")
    for name, overrides in methods.items():
        if method_of(name, overrides) != name and (name in METHODS or method_of(name, overrides) == "reward_model"):
            raise ValueError(
                f"`methods.{name}`: a method's own name runs that method, and the reward model has no variants."
            )
    for name, overrides in methods.items():
        method, overrides = method_of(name, overrides), overrides or {}
        if method in TRAINERS and not (method == "rlhf" and overrides.get("algorithm") == "ppo"):
            _check_fields(f"methods.{name}", overrides, TRAINERS[method][1], {"method", "algorithm", "ppo_python"})
    _check_fields("judge", config.get("judge") or {}, RewardConfig, {"model"})
    if any(method_of(n, o) == "rlhf" for n, o in methods.items()) and "reward_model" not in methods:
        raise ValueError("`rlhf` trains against the `reward_model`: select both.")
    known = {f.name for _, config_class in TRAINERS.values() for f in fields(config_class)}
    unknown = set(config.get("training") or {}) - known
    if unknown:
        raise ValueError(f"`training` keys {sorted(unknown)} are fields of no method's TRL config.")
    if not 0 < (config.get("data") or {}).get("judge_prompts", 1):
        raise ValueError("`data.judge_prompts` must be positive: a count of prompts, or a fraction < 1 of them.")
    if len(set(config.get("model") or {}) & {"tiny", "name", "path"}) != 1:
        raise ValueError("`model` needs exactly one of `tiny`, `name` or `path`.")
    unknown = set(config.get("evaluation") or {}) - {f.name for f in fields(GenerationSettings)} - {"max_length"}
    if unknown:
        raise ValueError(f"Unknown `evaluation` keys {sorted(unknown)}.")
    return config


class Experiment:
    """A checked config with its data split and run directory; `train` and `evaluate` do the work.

    The base model is resolved (built, or converted into its cache) only when first needed.
    """

    def __init__(self, config_path: str | Path, output_dir: str | Path | None = None):
        self.config = config = load_config(config_path)
        self.seed = config.get("seed", 0)
        self.positive_threshold = config.get("positive_threshold", 1.0)
        self.run_dir = Path(output_dir or config.get("output_dir") or f"runs/{config.get('name', 'experiment')}")
        self.methods = config["methods"]
        order = list(METHODS)  # training order: by method (the reward model before RLHF), then as configured
        self.runs = {
            name: (method_of(name, overrides), {k: v for k, v in (overrides or {}).items() if k != "method"})
            for name, overrides in sorted(self.methods.items(), key=lambda item: order.index(method_of(*item)))
        }
        self.training = config.get("training") or {}
        self.model_spec = config["model"]
        evaluation = dict(config.get("evaluation") or {})
        self.max_length = evaluation.pop("max_length", 1024)
        self.generation = GenerationSettings(**evaluation)

        data = config.get("data") or {}
        rows = load_rows(data)
        self.notes = []
        if data.get("demonstrations"):
            rows, replaced = replace_positives(rows, load_rows(data["demonstrations"]), self.positive_threshold)
            self.notes.append(f"{replaced} positives replaced by demonstrations.")
        seed, judge_prompts = data.get("seed", self.seed), data.get("judge_prompts")
        self.train_rows, self.eval_rows = split_by_prompt(
            rows, data.get("eval_prompts", 0.1), seed, None if judge_prompts else data.get("train_prompts")
        )
        self.judge_rows = self.train_rows
        if judge_prompts:
            try:
                self.train_rows, self.judge_rows = split_by_prompt(
                    self.train_rows, judge_prompts, seed, data.get("train_prompts")
                )
            except ValueError:
                left = len({prompt_key(prompt) for prompt in self.train_rows["prompt"]})
                raise ValueError(
                    f"`data.judge_prompts={judge_prompts}` must leave training prompts: {left} are left after the "
                    "held-out ones. Lower it, or `eval_prompts`."
                ) from None
        self.references = reference_answers(self.eval_rows, self.positive_threshold)
        if not self.references:
            raise ValueError("No held-out prompt has a positive answer to serve as the reference: hold out more.")
        self.held_out = scored_rows(self.eval_rows).to_list()
        self.pairs = pair_indices(self.held_out)
        self.data_fingerprint = _fingerprint(self.train_rows.to_list())
        self.judge_fingerprint = _fingerprint(self.judge_rows.to_list()) if judge_prompts else self.data_fingerprint
        self.eval_fingerprint = _fingerprint(self.eval_rows.to_list())
        judge = f", {len(self.judge_rows)} judge-training rows" if judge_prompts else ""
        self.notes.append(
            f"Data: {len(self.train_rows)} training rows{judge}, {len(self.eval_rows)} held-out rows "
            f"({len(self.references)} held-out prompts with a reference answer, {len(self.pairs)} held-out pairs)."
        )

    @cached_property
    def model_path(self) -> str:
        spec = self.model_spec
        if "tiny" in spec:
            from .testing import save_tiny_model

            path = self.run_dir / "base-model"
            if not (path / "config.json").is_file():
                save_tiny_model(path, **(spec["tiny"] or {}))
            return str(path)
        if "name" in spec:
            from .default_models import default_model_path

            return str(default_model_path(spec["name"]))
        return str(spec["path"])

    @property
    def judge_model(self) -> str:
        """The judge's base model: ``judge.model``, or the methods' base model."""
        return str((self.config.get("judge") or {}).get("model", self.model_path))

    def tokenizer(self, path: str | None = None):
        """A fresh tokenizer (trainers may change it): the tiny model's is a plain fast tokenizer (see `testing`)."""
        path = path or self.model_path
        if "tiny" in self.model_spec and path == self.model_path:
            return PreTrainedTokenizerFast.from_pretrained(path)
        return AutoTokenizer.from_pretrained(path)

    # ---------------------------------------------------------------------------------------------------------------
    # Training
    # ---------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _config_class(method: str, overrides: dict[str, Any]) -> type:
        """The config class whose fields ``method`` takes from ``training``."""
        if method == "rlhf" and overrides.get("algorithm") == "ppo":
            return TrainingArguments  # TRL 1.12's PPOConfig, not importable here, extends it
        return TRAINERS[method][1]

    def _settings(self, method: str, overrides: dict[str, Any]) -> dict[str, Any]:
        config_fields = {f.name for f in fields(self._config_class(method, overrides))}
        settings = {key: value for key, value in self.training.items() if key in config_fields}
        settings.setdefault("seed", self.seed)
        if "positive_threshold" in config_fields or method in ("sft", "kto"):
            settings["positive_threshold"] = self.positive_threshold
        return settings | overrides

    def _train(
        self, name: str, method: str, settings: dict[str, Any], model: str, fingerprint: str, judge: bool = False
    ) -> bool:
        """Train ``method`` into ``run_dir/name`` unless a finished output with this ``fingerprint`` exists.

        ``judge``: on the judge-training rows instead of the training rows. Returns whether it trained.
        """
        output_dir = self.run_dir / name
        if _finished(output_dir / FINISHED, fingerprint):
            logger.info(f"{name}: finished output found in {output_dir}, skipped")
            return False
        shutil.rmtree(output_dir, ignore_errors=True)
        logger.info(f"{name}: training {method} into {output_dir}")
        train, _ = TRAINERS[method]
        kwargs = dict(settings)
        if method == "rlhf":
            kwargs["reward_model"] = str(self.run_dir / "reward_model")
            kwargs["reward_processing_class"] = self.tokenizer()
        rows = self.judge_rows if judge else self.train_rows
        train(model, rows, str(output_dir), processing_class=self.tokenizer(), **kwargs)
        (output_dir / FINISHED).write_text(json.dumps({"method": method, "fingerprint": fingerprint}) + "\n")
        return True

    def train(self) -> dict[str, str]:
        """Train every selected method (then the judge); returns their fingerprints by name."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fingerprints = {"base": _fingerprint(self.model_path, self.model_spec)}
        jobs = [
            (name, method, self._settings(method, over), self.model_path)
            for name, (method, over) in self.runs.items()
            if method != "base"
        ]
        jobs.append(("judge", "reward_model", self._judge_settings(), self.judge_model))
        for name, method, settings, model in jobs:  # in order: RLHF's depends on the reward model's
            data = self.judge_fingerprint if name == "judge" else self.data_fingerprint
            depends = fingerprints.get("reward_model") if method == "rlhf" else None
            fingerprints[name] = _fingerprint(method, model, self.model_spec, settings, data, depends)
        steps = [
            0 if _finished(self.run_dir / name / FINISHED, fingerprints[name]) else settings.get("max_steps", -1)
            for name, _, settings, _ in jobs
        ]
        clock = Clock(steps, "of training")
        for name, method, settings, model in jobs:
            logger.info(f"[{clock.done + 1}/{len(jobs)}] {name} ({method}): {clock.status()}")
            trained = self._train(name, method, settings, model, fingerprints[name], judge=name == "judge")
            clock.tick(timed=trained)
        logger.info(f"training done: {clock.status()}")
        return fingerprints

    def _judge_settings(self) -> dict[str, Any]:
        judge = {key: value for key, value in (self.config.get("judge") or {}).items() if key != "model"}
        settings = self._settings("reward_model", dict(self.methods.get("reward_model") or {}))
        settings["seed"] = self.seed + 1  # apart from the reward model RLHF optimises
        return settings | judge

    # ---------------------------------------------------------------------------------------------------------------
    # Evaluation
    # ---------------------------------------------------------------------------------------------------------------
    def evaluate(self, fingerprints: dict[str, str]) -> dict[str, Any]:
        """Evaluate every selected policy (cached per method), write the report and return it."""
        judge = RewardJudge(
            str(self.run_dir / "judge"), self.tokenizer(self.judge_model), self.max_length, self.generation.batch_size
        )
        references = [dict(row) for row in self.references]
        scores = judge.score([row["prompt"] for row in references], [row["completion"] for row in references])
        for row, score in zip(references, scores, strict=True):
            row["reference_score"] = score
        toxicity = load_toxicity_classifier()
        judge_summary = {"pairs": len(self.pairs)}
        if self.pairs:
            held_out = judge.score(
                [row["prompt"] for row in self.held_out], [row["completion"] for row in self.held_out]
            )
            judge_summary["pair_accuracy"] = pair_accuracy(held_out, self.pairs)

        policies = [name for name, (method, _) in self.runs.items() if method != "reward_model"]
        evaluations = {name: self._evaluation_fingerprint(name, fingerprints, toxicity) for name in policies}
        clock = Clock(
            [0 if _finished(self.run_dir / name / EVALUATED, evaluations[name]) else 1 for name in policies],
            "of evaluation",
        )
        results, details = {}, {}
        for name in policies:
            logger.info(f"[{clock.done + 1}/{len(policies)}] evaluating {name}: {clock.status()}")
            path = self.model_path if self.runs[name][0] == "base" else str(self.run_dir / name)
            results[name], details[name], evaluated = self._evaluate_one(
                name, path, evaluations[name], judge, references, toxicity
            )
            clock.tick(timed=evaluated)
        if "base" in details:
            base = details["base"]
            for name in policies:
                if self.pairs:
                    gains = [m - b for m, b in zip(details[name]["row_logps"], base["row_logps"], strict=True)]
                    results[name]["pair_accuracy"] = pair_accuracy(gains, self.pairs)
                results[name]["win_rate_vs_base"] = win_rate(details[name]["judge_scores"], base["judge_scores"])
        curves = {}
        for name, (method, _) in self.runs.items():
            if method != "base":
                key = CURVE_KEYS.get(method, "loss")
                state = _read_json(self.run_dir / name / "trainer_state.json")
                curves[name] = (key, [(entry["step"], entry[key]) for entry in state["log_history"] if key in entry])
        notes = self.notes + self._evaluation_notes(references, toxicity, judge_summary)
        files = write_report(self.run_dir, results, curves, notes, {"judge": judge_summary})
        return {
            "run_dir": str(self.run_dir),
            "results": results,
            "notes": notes,
            "files": files,
            "judge": judge_summary,
        }

    def _evaluation_notes(self, references: list[dict[str, Any]], toxicity, judge: dict[str, Any]) -> list[str]:
        reference = (
            f"Reference answers: judge score {sum(r['reference_score'] for r in references) / len(references):.3f}"
        )
        if toxicity is not None:
            rate = toxicity_rate([completion_text(row["completion"]) for row in references], toxicity)
            reference += f", toxicity rate {rate:.3f}"
        trained_on = "the judge-training split" if self.judge_rows is not self.train_rows else "the training pairs"
        accuracy = (
            f" Its accuracy on the {judge['pairs']} held-out pairs (the better answer scored higher): "
            f"{judge['pair_accuracy']:.3f}."
            if "pair_accuracy" in judge
            else ""
        )
        notes = [
            reference + " (their win rate is 0.5 by definition).",
            TOXICITY_NOTE if toxicity is not None else NO_TOXICITY_NOTE,
            (
                f"Judge: a reward model trained on {trained_on} only, seeded apart from the RLHF reward model."
                + accuracy
                + " `base` is the untrained base model; pair accuracy is the share of held-out pairs whose better "
                "answer gained more log-prob than the worse one from `base` to the method (ties, as for `base`, "
                "count half)."
            ),
        ]
        half_width = 1.96 * math.sqrt(0.25 / len(references))
        notes.append(
            f"Chance alone moves a win rate near 0.5 over {len(references)} prompts by up to about ±{half_width:.2f} "
            "(a 95% binomial interval; the same for pair accuracy over as many pairs): smaller differences do not "
            "separate two methods."
        )
        for name, (method, overrides) in self.runs.items():
            if method == "rlhf":
                notes.append(rlhf_note(overrides.get("algorithm", "rloo")))
        return notes

    def _evaluation_fingerprint(self, name: str, fingerprints: dict[str, str], toxicity) -> str:
        return _fingerprint(
            fingerprints[name],
            fingerprints["judge"],
            asdict(self.generation),
            self.max_length,
            self.eval_fingerprint,
            self.positive_threshold,
            toxicity is not None,
        )

    def _evaluate_one(self, name, path, fingerprint, judge, references, toxicity):
        """One policy's metrics and per-item details (``judge_scores``, ``row_logps``), and whether it ran now."""
        output_dir = self.run_dir / name
        output_dir.mkdir(exist_ok=True)
        if cached := _finished(output_dir / EVALUATED, fingerprint):
            logger.info(f"{name}: evaluation found, skipped")
            return cached["metrics"], cached["details"], False
        logger.info(f"{name}: evaluating {path}")
        metrics, samples, row_logps = evaluate_model(
            path,
            self.tokenizer(),
            self.held_out,
            references,
            judge,
            self.generation,
            toxicity,
            self.max_length,
            self.positive_threshold,
        )
        with open(output_dir / "samples.jsonl", "w") as file:
            file.writelines(json.dumps(sample) + "\n" for sample in samples)
        details = {"judge_scores": [sample["judge_score"] for sample in samples], "row_logps": row_logps}
        (output_dir / EVALUATED).write_text(
            json.dumps({"fingerprint": fingerprint, "metrics": metrics, "details": details}, indent=2) + "\n"
        )
        return metrics, details, True


class Clock:
    """Time elapsed and an estimate of the time left, at the mean seconds per step of the timed jobs so far.

    ``steps``: each job's steps in order (0: nothing to run, its output was found; < 0: unknown, and no estimate while
    one is still to run).
    """

    def __init__(self, steps: list[int], what: str = ""):
        self.steps, self.what, self.done, self.timed = steps, what, 0, []
        self.start = self.last = time.monotonic()

    def tick(self, timed: bool = True) -> None:
        """One job done; ``timed``: it ran (a skipped job says nothing about speed)."""
        now = time.monotonic()
        if timed and self.steps[self.done] > 0:
            self.timed.append((self.steps[self.done], now - self.last))
        self.last, self.done = now, self.done + 1

    def left(self) -> float | None:
        """Seconds left; None when nothing is left, before a job is timed, or while a job to run has no known length."""
        todo = self.steps[self.done :]
        if not sum(todo) or not self.timed or any(steps < 0 for steps in todo):
            return None
        return sum(todo) * sum(seconds for _, seconds in self.timed) / sum(steps for steps, _ in self.timed)

    def status(self) -> str:
        left = self.left()
        what = f" {self.what}" if self.what else ""
        estimate = f", about {_minutes(left)}{what} left" if left is not None else ""
        return f"{_minutes(time.monotonic() - self.start)} elapsed{estimate}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def run_experiment(config_path: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train every selected method, evaluate them and write ``results.md``/``.json``/``.png``; resumable.

    Returns ``run_dir``, ``results`` (method -> metric -> value), ``notes`` and the written ``files``.
    ``output_dir`` overrides the config's.
    """
    experiment = Experiment(config_path, output_dir)
    return experiment.evaluate(experiment.train())
