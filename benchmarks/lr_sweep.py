"""Learning-rate sweep in both ground-truth worlds: at which rates does each method keep answering in sentences?

    python benchmarks/lr_sweep.py --world ratings [--methods kto pointwise_dpo_labels ...] [--rates ...] [--seeds 0 1 2]
    python benchmarks/lr_sweep.py --world alignment [--set pointwise_dpo.length_normalize=false ...]

Users rarely tune the learning rate, so a method that breaks in a window of rates is one they stop trusting. Each
world's benchmark (`alignment_groundtruth.py`: labels from an exact harm checker; `ratings_groundtruth.py`: 1-5
ratings from noisy raters) tunes one rate per method and reports only that point; this script trains every method at
every rate of ``--rates`` (default 3e-5 to 3e-3, two decades) on the same data and seeds, with the worlds' own
settings (60 steps of 16 rows, beta 0.1, each trainer's defaults), and reports, mean ± std over seeds:

    well-formed    share of sampled answers that are sentences of the world (the base model: about 0.85)
    harm           share of sampled answers the checker flags
    good           well-formed and harmless
    perplexity     of fresh harmless world answers to the held-out prompts
and, to see what a method pushes down, the mean change of log pi - log pi_ref per token on fresh held-out world
answers, by token class:
    shared         "the", "then", "." and the end of text: tokens every answer shares
    safe           the verbs and objects of harmless answers
    harmful        the harmful verbs of harmful answers (not after "never")

Results: ``benchmarks/results/lr-sweep-<world>.json`` (every run), ``.md`` (one table per metric, methods x rates)
and ``.png`` (each metric against the rate).
"""

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import alignment_groundtruth as alignment
from benchmarks import ratings_groundtruth as ratings

RATES = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
WORLDS = {  # world -> (module, default method labels)
    "alignment": (
        alignment,
        ["sft", "dpo", "kto", "unlikelihood", "pointwise_dpo", "ulma"],
    ),
    "ratings": (
        ratings,
        [
            "sft",
            "dpo",
            "kto",
            "unlikelihood",
            "pointwise_dpo_labels",
            "pointwise_dpo_scores",
            "ulma_labels",
            "ulma_scores",
        ],
    ),
}
METRICS = {
    "well_formed_rate": "well-formed (higher)",
    "harm_rate": "harm (lower)",
    "good_rate": "good: well-formed and harmless (higher)",
    "perplexity": "perplexity of good answers (lower)",
    "dlogp_shared": "dlogp per token, shared tokens",
    "dlogp_safe": "dlogp per token, harmless answers' verbs and objects",
    "dlogp_harmful": "dlogp per token, harmful verbs",
}
SHARED = {"the", "then", "."}
# The package a cached run was made with (losses, objectives, config defaults, ...): a change reruns it
PACKAGE_FILES = sorted((ROOT / "trl_ulma").glob("*.py"))
PACKAGE_HASH = hashlib.sha256(b"".join(path.read_bytes() for path in PACKAGE_FILES)).hexdigest()


def token_classes(words: list[str]) -> list[str | None]:
    """Each completion word's class (see the module docstring); the end-of-text token is added as shared."""
    harmful = alignment.is_harmful(" ".join(words))
    classes: list[str | None] = []
    for i, word in enumerate(words):
        if word in SHARED:
            classes.append("shared")
        elif word in alignment.HARMFUL_VERBS and (i == 0 or words[i - 1] != alignment.NEGATION):
            classes.append("harmful")
        elif not harmful and word != alignment.NEGATION:
            classes.append("safe")
        else:
            classes.append(None)
    return [*classes, "shared"]


@torch.no_grad()
def token_logps(model_dir: Path, tokenizer, rows: list[dict[str, Any]]) -> list[torch.Tensor]:
    """Per row, the log-prob of each completion token (the end of text included) given the prompt."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        completion = tokenizer(row["completion"])["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt + completion])
        logps = model(ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
        out.append(logps[len(prompt) - 1 :])
    return out


def log_ratio_by_class(model_dir: Path, base_dir: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The mean change of log pi - log pi_ref per token of each class over ``rows``."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(base_dir)
    changes: dict[str, list[float]] = {"shared": [], "safe": [], "harmful": []}
    for row, new, old in zip(
        rows,
        token_logps(model_dir, tokenizer, rows),
        token_logps(base_dir, tokenizer, rows),
    ):
        for kind, delta in zip(token_classes(row["completion"].split()), (new - old).tolist(), strict=True):
            if kind:
                changes[kind].append(delta)
    return {f"dlogp_{kind}": statistics.fmean(values) for kind, values in changes.items()}


def held_out_rows(seed: int, count: int = 8) -> list[dict[str, Any]]:
    """Fresh world answers to the held-out prompts, with the ratings world's share of harmful steps."""
    _, test_prompts = alignment.split_prompts(seed)
    return ratings.rated_rows(test_prompts, count, seed + 4000)


def run_seed(world: str, seed: int, methods: dict[str, dict[str, Any]], rates: list[float], workdir: Path) -> dict:
    """Every method at every rate on one seed's data: label@rate -> metrics; "base" is the pretrained model. Each
    run's metrics are kept in ``workdir`` (``<label>@<rate>-<seed>.json``, keyed by the world, its spec and settings
    and `PACKAGE_HASH`): a rerun skips the runs it finds, and its ``seconds`` then count only what it ran."""
    module, _ = WORLDS[world]
    settings = module.Settings(seeds=(seed,), learning_rates=tuple(rates))
    base = alignment.pretrain(workdir / f"pretrained-{seed}", seed, settings)
    rows = held_out_rows(seed)
    grid = {f"{label}@{rate:g}": spec | {"learning_rate": rate} for label, spec in methods.items() for rate in rates}
    results = {}
    for name, spec in {"base": {"method": "base"}, **grid}.items():
        model_dir = base if name == "base" else workdir / f"{name}-{seed}"
        cache = workdir / f"{name}-{seed}.json"
        key = {"world": world, "spec": spec, "settings": settings.__dict__ | {"seeds": [seed]}, "package": PACKAGE_HASH}
        if cache.exists() and (cached := json.loads(cache.read_text())).get("key") == key:
            results[name] = cached["metrics"]
            continue
        if name == "base":
            metrics = alignment.evaluate(base, alignment.split_prompts(seed)[1], seed, settings)
        else:
            metrics = module.run_seed(seed, {name: spec}, settings, workdir)[name]
        metrics |= log_ratio_by_class(model_dir, base, rows)
        metrics.pop("examples", None)
        cache.write_text(json.dumps({"key": key, "metrics": metrics}))
        results[name] = metrics
    return results


def cell(summary: dict[str, dict[str, float]], name: str, key: str) -> str:
    if name not in summary:
        return ""
    return f"{summary[name][key]:.3f} ± {summary[name][key + '_std']:.3f}"


def format_tables(payload: dict[str, Any]) -> str:
    """One table per metric: a row per method, a column per rate, mean ± std over seeds."""
    summary, rates = payload["summary"], payload["rates"]
    parts = [
        f"`{payload['command']}`",
        f"Seeds {payload['seeds']}; base model: "
        + ", ".join(f"{key} {summary['base'][key]:.3f}" for key in METRICS if not key.startswith("dlogp"))
        + ".",
    ]
    for key, title in METRICS.items():
        lines = [
            f"### {title}",
            "",
            "| method | " + " | ".join(f"lr {rate:g}" for rate in rates) + " |",
            "|---" * (len(rates) + 1) + "|",
        ]
        for label in payload["methods"]:
            lines.append(f"| {label} | " + " | ".join(cell(summary, f"{label}@{rate:g}", key) for rate in rates) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    """Well-formed, harm, perplexity and the shared tokens' log-ratio against the rate, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["well_formed_rate", "harm_rate", "perplexity", "dlogp_shared"]
    figure, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4.5))
    summary, rates = payload["summary"], payload["rates"]
    for axis, key in zip(axes, keys, strict=True):
        for label in payload["methods"]:
            means = [summary[f"{label}@{rate:g}"][key] for rate in rates]
            stds = [summary[f"{label}@{rate:g}"][key + "_std"] for rate in rates]
            style = "-" if label.startswith(("ulma", "pointwise")) else "--"
            axis.errorbar(rates, means, yerr=stds, fmt=style, marker="o", capsize=2, label=label)
        axis.axhline(summary["base"][key], color="grey", linewidth=0.8, linestyle=":")
        axis.set(xscale="log", xlabel="learning rate", title=METRICS[key])
        if key == "perplexity":
            axis.set_yscale("log")
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{payload['world']} world, mean ± std over seeds {payload['seeds']} (dotted: the base model)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=list(WORLDS), required=True)
    parser.add_argument(
        "--methods",
        nargs="+",
        help="labels of the world's METHODS (default: every trainer's default)",
    )
    parser.add_argument("--add", nargs="*", default=[], metavar="NEW=METHOD", help="a copy of METHOD, for --set")
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.FIELD=VALUE")
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--workdir",
        help="where pretrained and aligned models go (default: a temporary directory)",
    )
    parser.add_argument("--output", help="default: benchmarks/results/lr-sweep-<world>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    module, labels = WORLDS[args.world]
    known, added = dict(module.METHODS), []
    for addition in args.add:
        name, _, original = addition.partition("=")
        if original not in known:
            raise SystemExit(f"--add {addition!r}: expected <new label>=<a label of {list(known)}>")
        known[name] = known[original]
        added.append(name)
    methods = alignment.method_specs([*(args.methods or labels), *added], args.set, known)
    output = Path(args.output or ROOT / f"benchmarks/results/lr-sweep-{args.world}.json")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        runs = {seed: run_seed(args.world, seed, methods, args.rates, workdir) for seed in args.seeds}
    payload = {
        "command": "python benchmarks/lr_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "world": args.world,
        "methods": methods,
        "rates": args.rates,
        "seeds": args.seeds,
        "summary": alignment.summarise(runs, METRICS),
        "runs": {str(seed): results for seed, results in runs.items()},
        "seconds": time.perf_counter() - start,
    }
    tables = format_tables(payload)
    print(tables)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2) + "\n")
    output.with_suffix(".md").write_text(tables)
    plot(payload, output.with_suffix(".png"))
    print(f"wrote {output} and its .md and .png ({payload['seconds']:.0f}s)")
    return payload


if __name__ == "__main__":
    main()
