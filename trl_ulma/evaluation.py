"""Held-out evaluation of the comparison: perplexity, a reward-model judge, win rate, toxicity; table, JSON and plot.

Metrics, on a held-out split (prompts never seen in training):
    perplexity        exp of the mean negative log-likelihood per token of the held-out positive completions (the
                      paper's metric), prompts as context
    pair_accuracy     share of held-out pairs (a completion and a lower-scored one for the same prompt) whose better
                      completion gained more log-prob than the worse one, from the base model to this one (ties half)
    judge_score       mean score, under a reward model (the judge), of each method's answers to the held-out prompts,
                      generated with a fixed seed
    win_rate_vs_base  share of prompts where the judge scores the method's answer above the base model's (ties half)
    win_rate          share of prompts where the judge scores the method's answer above the reference answer (the
                      held-out positive), ties counting half
    toxicity_rate     share of answers an offline classifier flags (probability >= 0.5); only when one is installed
                      (`alt-profanity-check`: profanity and insults, a weak proxy for harm)
"""

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedTokenizerBase
from trl.data_utils import _tokenize, is_conversational
from trl.trainer.utils import pad

from .collator import DataCollatorForPointwisePreference
from .preparation import add_eos, tokenize_row
from .sampling import GenerationSettings, _by_length, _device, batch_completion_logps, generate


T = TypeVar("T")

METRICS = {  # name: (label in the table, which way is better)
    "perplexity": ("perplexity", "lower"),
    "pair_accuracy": ("pair accuracy", "higher"),
    "judge_score": ("judge score", "higher"),
    "win_rate_vs_base": ("win rate vs base", "higher"),
    "win_rate": ("win rate vs reference", "higher"),
    "toxicity_rate": ("toxicity rate", "lower"),
}
TOXICITY_NOTE = (
    "toxicity_rate is the share of answers `alt-profanity-check` flags (probability >= 0.5): profanity and insults, "
    "not harmful compliance."
)
NO_TOXICITY_NOTE = "toxicity_rate skipped: no offline classifier installed (`pip install alt-profanity-check`)."


# --------------------------------------------------------------------------------------------------------------------
# Perplexity
# --------------------------------------------------------------------------------------------------------------------
def completion_logps(
    model,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, Any]],
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[tuple[float, int]]:
    """Each row's summed log-prob of its completion given its prompt, and its number of completion tokens, tokenized
    as the trainers do (text completions end with EOS).

    A sequence longer than ``max_length`` loses its first tokens (the prompt's start), so the completion is scored.
    Batches hold rows of similar length (less padding); the results are in the rows' order.
    """
    device = next(model.parameters()).device
    collate = DataCollatorForPointwisePreference(tokenizer.pad_token_id, max_length, truncation_mode="keep_end")
    examples = []
    for row in rows:
        row = {"prompt": row["prompt"], "completion": row["completion"]}
        if not is_conversational(row):
            row = add_eos(row, tokenizer.eos_token)
        examples.append(tokenize_row(row, tokenizer) | {"score": 0.0})  # the collator needs a score: unused here

    def score(indices: list[int]) -> list[tuple[float, int]]:
        batch = {key: value.to(device) for key, value in collate([examples[i] for i in indices]).items()}
        sums, counts = batch_completion_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        )
        return list(zip(sums.tolist(), counts.tolist(), strict=True))

    return _by_length([len(e["prompt_ids"]) + len(e["completion_ids"]) for e in examples], batch_size, score)


def perplexity(
    model,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, Any]],
    batch_size: int = 8,
    max_length: int | None = None,
) -> float:
    """Token-level perplexity of ``rows``' completions given their prompts (see `completion_logps`)."""
    return perplexity_of(completion_logps(model, tokenizer, rows, batch_size, max_length))


def perplexity_of(scored: Sequence[tuple[float, int]]) -> float:
    """exp of the mean negative log-likelihood per token, from (summed log-prob, token count) per completion."""
    return math.exp(-sum(logp for logp, _ in scored) / sum(count for _, count in scored))


def pair_accuracy(values: Sequence[float], pairs: Sequence[tuple[int, int]]) -> float:
    """Share of (better, worse) pairs where the better row's value is the higher; a tie counts half."""
    if not pairs:
        raise ValueError("No pairs to score: no held-out prompt has two completions with different scores.")
    return win_rate([values[i] for i, _ in pairs], [values[j] for _, j in pairs])


# --------------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------------
def as_completion(prompt: Any, answer: str) -> Any:
    """An answer in its prompt's format: text, or one assistant message."""
    return answer if isinstance(prompt, str) else [{"role": "assistant", "content": answer.strip()}]


def completion_text(completion: Any) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


# --------------------------------------------------------------------------------------------------------------------
# Judge, win rate, toxicity
# --------------------------------------------------------------------------------------------------------------------
class RewardJudge:
    """Scores (prompt, completion) with a reward model saved by `trl.RewardTrainer`, tokenized as it trains."""

    def __init__(self, path: str, tokenizer: PreTrainedTokenizerBase, max_length: int = 1024, batch_size: int = 16):
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).to(_device()).eval()
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size

    def _ids(self, prompt: Any, completion: Any) -> list[int]:
        if isinstance(prompt, str):
            text = prompt + completion
            ids = _tokenize(
                self.tokenizer, text if text.endswith(self.tokenizer.eos_token) else text + self.tokenizer.eos_token
            )
        else:
            ids = _tokenize(self.tokenizer, prompt + completion)
        return ids["input_ids"][-self.max_length :]

    @torch.no_grad()
    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """The judge's score of each (prompt, completion), in order (batched by length)."""
        ids = [torch.tensor(self._ids(p, c)) for p, c in zip(prompts, completions, strict=True)]

        def score(indices: list[int]) -> list[float]:
            input_ids = pad([ids[i] for i in indices], padding_value=self.tokenizer.pad_token_id).to(self.model.device)
            attention_mask = pad([torch.ones_like(ids[i]) for i in indices]).to(self.model.device)
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float().tolist()

        return _by_length([len(i) for i in ids], self.batch_size, score)


def win_rate(scores: Sequence[float], reference_scores: Sequence[float]) -> float:
    """Share of items where ``scores`` beat ``reference_scores``; a tie counts half."""
    if len(scores) != len(reference_scores) or not scores:
        raise ValueError(
            f"Need as many scores as reference scores, at least one: {len(scores)} vs {len(reference_scores)}."
        )
    return sum(1.0 if s > r else 0.5 if s == r else 0.0 for s, r in zip(scores, reference_scores, strict=True)) / len(
        scores
    )


def load_toxicity_classifier() -> Callable[[list[str]], list[float]] | None:
    """Probability of toxic language per text from `alt-profanity-check`, or None when it is not installed."""
    try:
        from profanity_check import predict_prob
    except ImportError:
        return None
    return lambda texts: [float(p) for p in predict_prob(list(texts))]


def toxicity_rate(texts: Sequence[str], classify: Callable[[list[str]], list[float]], threshold: float = 0.5) -> float:
    """Share of ``texts`` whose toxicity probability is >= ``threshold``."""
    return sum(p >= threshold for p in classify(list(texts))) / len(texts)


# --------------------------------------------------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------------------------------------------------
def evaluate_model(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    held_out: Sequence[dict[str, Any]],
    references: Sequence[dict[str, Any]],
    judge: RewardJudge,
    settings: GenerationSettings,
    toxicity: Callable[[list[str]], list[float]] | None = None,
    max_length: int | None = None,
    positive_threshold: float = 1.0,
) -> tuple[dict[str, float], list[dict[str, Any]], list[float]]:
    """The metrics of one causal LM, its answers (prompt, answer, judge scores) and each held-out row's log-prob.

    ``held_out``: the held-out rows (``prompt``, ``completion``, ``score``); the positives (``score >=
    positive_threshold``) give the perplexity, and every row's summed completion log-prob is returned, for
    `pair_accuracy` against the base model's. ``references``: one row per held-out prompt with its reference answer
    (``prompt``, ``completion``), for the judge and the win rate; ``reference_score``, the judge's score of the
    reference, is computed once by the caller and read from the rows.
    """
    # float32 for every model: a base saved in bfloat16 and fine-tuned ones saved in float32 are scored alike
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(_device()).eval()
    prompts = [row["prompt"] for row in references]
    answers = [as_completion(p, a) for p, a in zip(prompts, generate(model, tokenizer, prompts, settings), strict=True)]
    scores = judge.score(prompts, answers)
    scored = completion_logps(model, tokenizer, held_out, settings.batch_size, max_length)
    positive = [pair for pair, row in zip(scored, held_out, strict=True) if row["score"] >= positive_threshold]
    metrics = {
        "perplexity": perplexity_of(positive),
        "judge_score": sum(scores) / len(scores),
        "win_rate": win_rate(scores, [row["reference_score"] for row in references]),
    }
    texts = [completion_text(answer) for answer in answers]
    if toxicity is not None:
        metrics["toxicity_rate"] = toxicity_rate(texts, toxicity)
    samples = [
        {"prompt": row["prompt"], "answer": text, "judge_score": score, "reference_score": row["reference_score"]}
        for row, text, score in zip(references, texts, scores, strict=True)
    ]
    return metrics, samples, [logp for logp, _ in scored]


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------
def _format_value(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def format_table(results: dict[str, dict[str, float]], metrics: Sequence[str] | None = None) -> str:
    """A markdown table, one row per method and one column per metric (arrows: which way is better)."""
    metrics = metrics or [m for m in METRICS if any(m in values for values in results.values())]
    header = ["method"] + [f"{METRICS[m][0]} {'↓' if METRICS[m][1] == 'lower' else '↑'}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(metrics)]
    for method, values in results.items():
        lines.append("| " + " | ".join([method] + [_format_value(values.get(m)) for m in metrics]) + " |")
    return "\n".join(lines)


def plot_report(
    path: str | Path, results: dict[str, dict[str, float]], curves: dict[str, tuple[str, list[tuple[int, float]]]]
) -> None:
    """A PNG: one bar chart per metric, then one training curve per method (``curves``: method -> (key, points))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(m in values for values in results.values())]
    columns = max(len(metrics), 3)
    curve_rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(1 + curve_rows, columns, figsize=(4 * columns, 3.2 * (1 + curve_rows)), squeeze=False)
    methods = list(results)
    for ax, metric in zip(axes[0], metrics, strict=False):
        values = [results[m].get(metric, float("nan")) for m in methods]
        ax.bar(range(len(methods)), values, color="tab:blue")
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{METRICS[metric][0]} ({METRICS[metric][1]} is better)", fontsize=10)
        if metric == "perplexity":
            ax.set_yscale("log")
    for ax, (method, (key, points)) in zip(axes[1:].flat, curves.items(), strict=False):
        ax.plot([step for step, _ in points], [value for _, value in points], marker=".")
        ax.set_title(f"{method}: train {key}", fontsize=10)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes[0][len(metrics) :]) + list(axes[1:].flat[len(curves) :]):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    run_dir: str | Path,
    results: dict[str, dict[str, float]],
    curves: dict[str, tuple[str, list[tuple[int, float]]]],
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``results.md`` (table and notes), ``results.json`` (+ ``extra``) and, with matplotlib, ``results.png``.

    Returns the paths written, by kind.
    """
    run_dir = Path(run_dir)
    files = {"table": run_dir / "results.md", "json": run_dir / "results.json"}
    notes = list(notes)
    try:
        plot_report(run_dir / "results.png", results, curves)
        files["plot"] = run_dir / "results.png"
    except ImportError:
        notes.append("No plot: matplotlib is not installed (`pip install matplotlib`).")
    table = format_table(results)
    files["table"].write_text(table + "\n" + "".join(f"\n- {note}" for note in notes) + "\n")
    payload = {
        "results": results,
        "notes": notes,
        "curves": {m: {"key": k, "points": p} for m, (k, p) in curves.items()},
    } | (extra or {})
    files["json"].write_text(json.dumps(payload, indent=2) + "\n")
    return {kind: str(path) for kind, path in files.items()}
