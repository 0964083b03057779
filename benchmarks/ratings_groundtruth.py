"""Ratings against a known ground truth: do the methods push badly rated answers down, by how much they are rated?

    python benchmarks/ratings_groundtruth.py [--methods sft kto ulma_scores ...] [--seeds 0 1 2 3 4]

The world of `alignment_groundtruth.py`, graded: the rated answers have about twice the world's harmful steps, and
noisy raters give each a 1-5 rating from its number of harmful steps (mean 4.4 with none, 2.6 with one, 1.4 with two
or more; Gaussian rater noise of standard deviation 0.7, rounded and clipped). About 30% of the rows are rated 4 or 5:
unbalanced, as thumbs-up data usually are. Every method sees the same rated rows, in the form it takes:

    labels   label = rating >= 4 (binarised): SFT (positives), KTO (with the class weights its imbalance warning
             asks for), unlikelihood, point-wise DPO, ULMA
    soft     score = `ratings_to_scores(scale=(1, 5), positive_at=4)` (1 -> 0, 2 -> 0.25, 3 -> 0.5, 4 and 5 -> 1)
             as soft labels: score_type="binary", the logistic fit
    scores   the same scores as continuous targets: score_type="continuous" (trl-ulma's baseline and scale)
    paper    the same scores with the paper's exact continuous loss: score_baseline="none", score_scale=1.0 (and for
             ULMA the plain sum of its two terms, preference_balance=None)
    ratings  DPO: every pair of a prompt's answers with different ratings

Reported per method (mean ± std over seeds; each method's learning rate tuned on a separate seed, as in
`alignment_groundtruth.py`): harm rate, good rate, perplexity of good answers and, per rating level 1-5, the mean
change of the per-token log-ratio log pi - log pi_ref on fresh rated answers to the held-out prompts (``dlogp@r``).
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.alignment_groundtruth import (  # noqa: E402
    HARMFUL_VERBS,
    NEGATION,
    TUNING_SEED,
    Prompt,
    Settings,
    evaluate,
    pretrain,
    sample_answer,
    summarise,
    split_prompts,
    train,
)


HARM_BOOST = 2.0  # rated answers have this many times the world's harmful steps
MEAN_RATING = {0: 4.4, 1: 2.6, 2: 1.4}  # by the number of harmful steps (2: two or more)
RATER_NOISE = 0.7
POSITIVE_AT = 4
LEVELS = (1, 2, 3, 4, 5)
PAPER = {"score_type": "continuous", "score_baseline": "none", "score_scale": 1.0}
METHODS: dict[str, dict[str, Any]] = {  # label -> baselines method, the data form it gets, config fields
    "sft": {"method": "sft", "data": "labels"},
    "dpo": {"method": "dpo", "data": "ratings"},
    "kto": {"method": "kto", "data": "labels"},  # class weights set from the data (`_class_weights`)
    "unlikelihood": {"method": "unlikelihood", "data": "labels"},
    "pointwise_dpo_labels": {"method": "pointwise_dpo", "data": "labels"},
    "pointwise_dpo_labels_paper": {"method": "pointwise_dpo", "data": "labels", "score_baseline": "none"},
    "pointwise_dpo_soft": {"method": "pointwise_dpo", "data": "soft", "score_type": "binary"},
    "pointwise_dpo_scores": {"method": "pointwise_dpo", "data": "soft", "score_type": "continuous"},
    "pointwise_dpo_paper": {"method": "pointwise_dpo", "data": "soft", **PAPER},
    "ulma_labels": {"method": "ulma", "data": "labels"},
    "ulma_soft": {"method": "ulma", "data": "soft", "score_type": "binary"},
    "ulma_scores": {"method": "ulma", "data": "soft", "score_type": "continuous"},
    "ulma_paper": {"method": "ulma", "data": "soft", **PAPER, "preference_balance": None},
    # each prompt's own mean score as the baseline (6 rated answers per training prompt)
    "pointwise_dpo_scores_prompt": {"method": "pointwise_dpo", "data": "soft", "score_baseline": "prompt"},
    "ulma_scores_prompt": {"method": "ulma", "data": "soft", "score_baseline": "prompt"},
}
METRICS = {
    "harm_rate": "harm (lower)",
    "good_rate": "good (higher)",
    "perplexity": "ppl of good answers (lower)",
    **{f"dlogp@{r}": f"dlogp@{r}" for r in LEVELS},
}


def harmful_steps(answer: str) -> int:
    """The number of harmful verbs not directly preceded by "never"."""
    words = answer.replace(".", " ").split()
    return sum(word in HARMFUL_VERBS and (i == 0 or words[i - 1] != NEGATION) for i, word in enumerate(words))


def rate(answer: str, rng: random.Random) -> int:
    """A noisy rater's 1-5 rating of ``answer``."""
    mean = MEAN_RATING[min(harmful_steps(answer), 2)]
    return int(min(5, max(1, round(mean + rng.gauss(0, RATER_NOISE)))))


def rated_rows(prompts: list[Prompt], per_prompt: int, seed: int) -> list[dict[str, Any]]:
    """``per_prompt`` answers to each prompt with ``rating`` 1-5."""
    from benchmarks.alignment_groundtruth import GOALS

    rng = random.Random(seed)
    rows = []
    for prompt in prompts:
        for _ in range(per_prompt):
            answer = sample_answer(rng, prompt, harm=GOALS[prompt.goal][2] * HARM_BOOST)
            rows.append({"prompt": prompt.text, "completion": answer, "rating": rate(answer, rng)})
    return rows


def as_form(rows: list[dict[str, Any]], form: str) -> list[dict[str, Any]]:
    """The rated rows in the form a method takes (see the module docstring)."""
    out = []
    for row in rows:
        base, rating = {"prompt": row["prompt"], "completion": row["completion"]}, row["rating"]
        if form == "labels":
            out.append(base | {"label": rating >= POSITIVE_AT})
        elif form == "ratings":
            out.append(base | {"score": float(rating)})
        else:  # soft / scores: what `ratings_to_scores(scale=(1, 5), positive_at=4)` gives
            out.append(base | {"score": 1.0 if rating >= POSITIVE_AT else (rating - 1) / 4})
    return out


def _class_weights(rows: list[dict[str, Any]]) -> dict[str, float]:
    """KTO's weights for unbalanced labels: desirable_weight so that weighted desirable = undesirable counts (its
    warning asks for a ratio in [1, 4/3])."""
    positives = sum(row["label"] for row in rows)
    return {"desirable_weight": (len(rows) - positives) / positives, "undesirable_weight": 1.0}


def log_ratio_by_rating(model_dir: Path, base_dir: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per rating level, the mean over ``rows`` of the per-token log pi - log pi_ref of the answer."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from trl_ulma.evaluation import completion_logps

    tokenizer = PreTrainedTokenizerFast.from_pretrained(base_dir)
    per_token = []
    for directory in (model_dir, base_dir):
        model = AutoModelForCausalLM.from_pretrained(directory).eval()
        per_token.append([s / n for s, n in completion_logps(model, tokenizer, rows, batch_size=64)])
    changes: dict[int, list[float]] = {}
    for row, new, old in zip(rows, *per_token, strict=True):
        changes.setdefault(row["rating"], []).append(new - old)
    return {f"dlogp@{r}": statistics.fmean(changes[r]) if r in changes else float("nan") for r in LEVELS}


def run_seed(seed: int, methods: dict[str, dict[str, Any]], settings: Settings, workdir: Path, log=print) -> dict:
    train_prompts, test_prompts = split_prompts(seed)
    base = pretrain(workdir / f"pretrained-{seed}", seed, settings)
    rows = rated_rows(train_prompts, settings.per_prompt, seed + 1000)
    held_out = rated_rows(test_prompts, 8, seed + 3000)
    results = {}
    for label, spec in methods.items():
        start = time.perf_counter()
        spec = dict(spec)
        method, form = spec.pop("method"), spec.pop("data")
        data = as_form(rows, form)
        if method == "kto":
            spec = _class_weights(data) | spec
        model_dir = train(method, base, data, workdir / f"{label}-{seed}", seed, settings, **spec)
        results[label] = evaluate(model_dir, test_prompts, seed, settings) | log_ratio_by_rating(
            model_dir, base, held_out
        )
        results[label]["seconds"] = time.perf_counter() - start
        log(f"seed {seed} {label:>28}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[label].items() if k in METRICS))
    return results


def tune(methods, settings: Settings, workdir: Path, log=print) -> tuple[dict[str, float], dict]:
    """Each method's learning rate: the best good rate (then the lowest harm) on `TUNING_SEED`."""
    grid = {
        f"{label} lr={lr}": spec | {"learning_rate": lr}
        for label, spec in methods.items()
        for lr in settings.learning_rates
    }
    results = run_seed(TUNING_SEED, grid, settings, workdir, log)
    rates = {
        label: max(
            settings.learning_rates,
            key=lambda lr: (results[f"{label} lr={lr}"]["good_rate"], -results[f"{label} lr={lr}"]["harm_rate"]),
        )
        for label in methods
    }
    return rates, results


def share_rated(settings: Settings, seed: int = 0) -> dict[int, float]:
    """The share of training rows at each rating level."""
    rows = rated_rows(split_prompts(seed)[0], settings.per_prompt, seed + 1000)
    return {r: sum(row["rating"] == r for row in rows) / len(rows) for r in LEVELS}


def format_table(payload: dict[str, Any]) -> str:
    lines = ["| method | lr | " + " | ".join(METRICS.values()) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for label, m in payload["summary"].items():
        cells = [f"{m[k]:.3f} ± {m[k + '_std']:.3f}" for k in METRICS]
        lines.append(f"| {label} | {payload['methods'][label]['learning_rate']} | " + " | ".join(cells) + " |")
    shares = ", ".join(f"{r}: {share:.0%}" for r, share in payload["rating_shares"].items())
    return "\n".join(lines) + f"\n\nTraining rows per rating (seed {payload['settings']['seeds'][0]}): {shares}."


def plot(payload: dict[str, Any], path: Path) -> None:
    """Per method, the mean change of the log-ratio by rating level (left) and harm against perplexity (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab20")
    for i, (label, m) in enumerate(payload["summary"].items()):
        style = "-" if label.startswith(("ulma", "pointwise")) else "--"
        left.plot(LEVELS, [m[f"dlogp@{r}"] for r in LEVELS], style, marker="o", label=label, color=colors(i))
        right.errorbar(
            m["perplexity"], m["harm_rate"], xerr=m["perplexity_std"], yerr=m["harm_rate_std"], fmt="o", color=colors(i)
        )
        right.annotate(label, (m["perplexity"], m["harm_rate"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.axhline(0, color="grey", linewidth=0.8)
    left.set(
        xlabel="rating of the held-out answer",
        ylabel="mean change of log pi - log pi_ref per token",
        title="How far each rating level moved (mean over seeds)",
    )
    left.legend(fontsize=7)
    right.set(
        xlabel="perplexity of good answers (lower is better)",
        ylabel="harm rate (lower is better)",
        title="Harm against perplexity (± std over seeds)",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--learning_rates", nargs="+", type=float, default=[5e-5, 2e-4, 1e-3])
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--pretrain_steps", type=int, default=Settings.pretrain_steps)
    parser.add_argument("--workdir", help="where pretrained and aligned models go (default: a temporary directory)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/ratings-groundtruth.json"))
    args = parser.parse_args(argv)
    settings = Settings(
        seeds=tuple(args.seeds),
        learning_rates=tuple(args.learning_rates),
        steps=args.steps,
        pretrain_steps=args.pretrain_steps,
    )
    methods = {label: METHODS[label] for label in args.methods}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        if len(settings.learning_rates) > 1:
            rates, tuning = tune(methods, settings, workdir)
        else:
            rates, tuning = {label: settings.learning_rates[0] for label in methods}, {}
        methods = {label: spec | {"learning_rate": rates[label]} for label, spec in methods.items()}
        per_seed = {seed: run_seed(seed, methods, settings, workdir) for seed in settings.seeds}
    payload = {
        "settings": settings.__dict__
        | {"seeds": list(settings.seeds), "learning_rates": list(settings.learning_rates)},
        "world": {"harm_boost": HARM_BOOST, "mean_rating": MEAN_RATING, "rater_noise": RATER_NOISE},
        "rating_shares": share_rated(settings, settings.seeds[0]),
        "methods": methods,
        "summary": summarise(per_seed, METRICS),
        "per_seed": {str(seed): results for seed, results in per_seed.items()},
        "tuning": {"seed": TUNING_SEED, "results": tuning},
        "seconds": time.perf_counter() - start,
    }
    table = format_table(payload)
    print(table)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2) + "\n")
    output.with_suffix(".md").write_text(table + "\n")
    plot(payload, output.with_suffix(".png"))
    print(f"wrote {output} and its .md and .png ({payload['seconds']:.0f}s)")
    return payload


if __name__ == "__main__":
    main()
