"""The ULMA paper's comparison in one call: train every method on the same data, evaluate, write the table.

`run_experiment(config_path)` reads a YAML config (see `experiments/*.yaml`), builds the point-wise data and splits it
by prompt into train and held-out rows, trains each selected method from the same base model (`trl_ulma.baselines`),
trains the judge (a reward model on the training pairs, seeded apart from the RLHF one), evaluates every policy on the
held-out prompts (`trl_ulma.evaluation`) and writes ``results.md``, ``results.json`` and ``results.png`` to the run
directory. Re-running resumes: a method whose finished output (and evaluation) exists for the same config and data is
skipped; one whose config or data changed is trained again.

Config keys:
    name, output_dir, seed, positive_threshold (default 1.0)
    model       exactly one of ``tiny: {hidden_size, seed}`` (built offline by `trl_ulma.testing`), ``name:`` (a
                `trl_ulma.default_models` name) or ``path:`` (a local Hugging Face folder)
    data        ``source``: ``toy`` (``rows``), ``hh`` (``path`` to raw Anthropic HH or Golden HH jsonl[.gz]) or
                ``file`` (``path`` to json/jsonl[.gz] rows: point-wise, DPO pairs or KTO ``messages`` + ``label``);
                ``eval_prompts`` (a count, or a fraction < 1), optional ``train_prompts`` cap, ``seed``; optional
                ``demonstrations`` (same keys as ``data``: better answers replacing the positives of their prompts)
    training    TRL config fields given to every method whose config has them (e.g. ``learning_rate``, ``max_length``)
    methods     method name -> its own config fields, for the methods to run (``base`` is the untrained model; the
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
import shutil
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
from .baselines import positives, rlhf_note, scored_rows
from .data import column_names, convert_to_pointwise, load_data, prompt_key, split_by_prompt
from .evaluation import (
    NO_TOXICITY_NOTE,
    TOXICITY_NOTE,
    GenerationSettings,
    RewardJudge,
    completion_text,
    evaluate_model,
    load_toxicity_classifier,
    toxicity_rate,
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


def load_config(config_path: str | Path) -> dict[str, Any]:
    """The YAML config, checked: known keys, methods and TRL fields, one base model, valid evaluation settings."""
    with open(config_path) as file:
        config = yaml.safe_load(file) or {}
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"Unknown config keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}.")
    methods = config.setdefault("methods", {name: {} for name in METHODS})
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; known: {list(METHODS)}.")
    if "rlhf" in methods and "reward_model" not in methods:
        raise ValueError("`rlhf` trains against the `reward_model`: select both.")
    known = {f.name for _, config_class in TRAINERS.values() for f in fields(config_class)}
    unknown = set(config.get("training") or {}) - known
    if unknown:
        raise ValueError(f"`training` keys {sorted(unknown)} are fields of no method's TRL config.")
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
        self.train_rows, self.eval_rows = split_by_prompt(
            rows, data.get("eval_prompts", 0.1), data.get("seed", self.seed), data.get("train_prompts")
        )
        self.references = reference_answers(self.eval_rows, self.positive_threshold)
        if not self.references:
            raise ValueError("No held-out prompt has a positive answer to serve as the reference: hold out more.")
        self.data_fingerprint = _fingerprint(self.train_rows.to_list())
        self.eval_fingerprint = _fingerprint(self.eval_rows.to_list())
        self.notes.append(
            f"Data: {len(self.train_rows)} training rows, {len(self.eval_rows)} held-out rows "
            f"({len(self.references)} held-out prompts with a reference answer)."
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

    def _train(self, name: str, method: str, settings: dict[str, Any], model: str, depends: str | None = None) -> str:
        """Train ``method`` into ``run_dir/name`` unless a finished output with the same fingerprint exists."""
        output_dir = self.run_dir / name
        fingerprint = _fingerprint(method, model, self.model_spec, settings, self.data_fingerprint, depends)
        finished = _read_json(output_dir / FINISHED)
        if finished and finished["fingerprint"] == fingerprint:
            logger.info(f"{name}: finished output found in {output_dir}, skipped")
            return fingerprint
        shutil.rmtree(output_dir, ignore_errors=True)
        logger.info(f"{name}: training {method} into {output_dir}")
        train, _ = TRAINERS[method]
        kwargs = dict(settings)
        if method == "rlhf":
            kwargs["reward_model"] = str(self.run_dir / "reward_model")
            kwargs["reward_processing_class"] = self.tokenizer()
        train(model, self.train_rows, str(output_dir), processing_class=self.tokenizer(), **kwargs)
        (output_dir / FINISHED).write_text(json.dumps({"method": method, "fingerprint": fingerprint}) + "\n")
        return fingerprint

    def train(self) -> dict[str, str]:
        """Train every selected method (then the judge); returns their fingerprints by name."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fingerprints = {"base": _fingerprint(self.model_path, self.model_spec)}
        for method in TRAINERS:
            if method in self.methods:
                settings = self._settings(method, dict(self.methods[method] or {}))
                depends = fingerprints.get("reward_model") if method == "rlhf" else None
                fingerprints[method] = self._train(method, method, settings, self.model_path, depends)
        fingerprints["judge"] = self.train_judge()
        return fingerprints

    def train_judge(self) -> str:
        judge = dict(self.config.get("judge") or {})
        model = str(judge.pop("model", self.model_path))
        settings = self._settings("reward_model", dict(self.methods.get("reward_model") or {}))
        settings["seed"] = self.seed + 1  # apart from the reward model RLHF optimises
        return self._train("judge", "reward_model", settings | judge, model)

    # ---------------------------------------------------------------------------------------------------------------
    # Evaluation
    # ---------------------------------------------------------------------------------------------------------------
    def evaluate(self, fingerprints: dict[str, str]) -> dict[str, Any]:
        """Evaluate every selected policy (cached per method), write the report and return it."""
        judge_model = str((self.config.get("judge") or {}).get("model", self.model_path))
        judge = RewardJudge(
            str(self.run_dir / "judge"), self.tokenizer(judge_model), self.max_length, self.generation.batch_size
        )
        references = [dict(row) for row in self.references]
        scores = judge.score([row["prompt"] for row in references], [row["completion"] for row in references])
        for row, score in zip(references, scores, strict=True):
            row["reference_score"] = score
        held_out_positives = positives(self.eval_rows, self.positive_threshold).to_list()
        toxicity = load_toxicity_classifier()

        results = {}
        for method in (m for m in METHODS if m in self.methods and m != "reward_model"):
            path = self.model_path if method == "base" else str(self.run_dir / method)
            results[method] = self._evaluate_one(
                method, path, fingerprints, judge, references, held_out_positives, toxicity
            )
        curves = {}
        for method in (m for m in TRAINERS if m in self.methods):
            key = CURVE_KEYS.get(method, "loss")
            state = _read_json(self.run_dir / method / "trainer_state.json")
            curves[method] = (key, [(entry["step"], entry[key]) for entry in state["log_history"] if key in entry])
        notes = self.notes + self._evaluation_notes(references, toxicity)
        files = write_report(self.run_dir, results, curves, notes)
        return {"run_dir": str(self.run_dir), "results": results, "notes": notes, "files": files}

    def _evaluation_notes(self, references: list[dict[str, Any]], toxicity) -> list[str]:
        reference = (
            f"Reference answers: judge score {sum(r['reference_score'] for r in references) / len(references):.3f}"
        )
        if toxicity is not None:
            rate = toxicity_rate([completion_text(row["completion"]) for row in references], toxicity)
            reference += f", toxicity rate {rate:.3f}"
        notes = [
            reference + " (their win rate is 0.5 by definition).",
            TOXICITY_NOTE if toxicity is not None else NO_TOXICITY_NOTE,
            (
                "Judge: a reward model trained on the training pairs only, seeded apart from the RLHF reward model; "
                "`base` is the untrained base model."
            ),
        ]
        if "rlhf" in self.methods:
            notes.append(rlhf_note((self.methods["rlhf"] or {}).get("algorithm", "rloo")))
        return notes

    def _evaluate_one(self, method, path, fingerprints, judge, references, held_out_positives, toxicity):
        output_dir = self.run_dir / method
        output_dir.mkdir(exist_ok=True)
        fingerprint = _fingerprint(
            fingerprints[method],
            fingerprints["judge"],
            asdict(self.generation),
            self.max_length,
            self.eval_fingerprint,
            toxicity is not None,
        )
        cached = _read_json(output_dir / EVALUATED)
        if cached and cached["fingerprint"] == fingerprint:
            logger.info(f"{method}: evaluation found, skipped")
            return cached["metrics"]
        logger.info(f"{method}: evaluating {path}")
        metrics, samples = evaluate_model(
            path, self.tokenizer(), held_out_positives, references, judge, self.generation, toxicity, self.max_length
        )
        with open(output_dir / "samples.jsonl", "w") as file:
            file.writelines(json.dumps(sample) + "\n" for sample in samples)
        (output_dir / EVALUATED).write_text(
            json.dumps({"fingerprint": fingerprint, "metrics": metrics}, indent=2) + "\n"
        )
        return metrics


def run_experiment(config_path: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train every selected method, evaluate them and write ``results.md``/``.json``/``.png``; resumable.

    Returns ``run_dir``, ``results`` (method -> metric -> value), ``notes`` and the written ``files``.
    ``output_dir`` overrides the config's.
    """
    experiment = Experiment(config_path, output_dir)
    return experiment.evaluate(experiment.train())
