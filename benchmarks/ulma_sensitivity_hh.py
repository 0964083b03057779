"""ULMA's term balance on real data: SmolLM2-135M-Instruct on the Anthropic HH harmless-base sample.

    python benchmarks/ulma_sensitivity_hh.py --data ../shared/data/hh-rlhf-harmless-base-test.jsonl.gz
                                             [--train_pairs 256] [--eval_prompts 48] [--steps 24]

HH has no ground truth, so this measures what the gradient analysis predicts directly: after training each variant
(the same rows, steps and learning rate), on held-out prompts, how far the mean per-token log-prob of the chosen
answers (positives) rose and that of the rejected ones (negatives) fell relative to the base model, the perplexity
of the chosen answers (the paper's metric), and how often the chosen answer's log-ratio to the base model beats the
rejected one's (pair accuracy, independent of beta). One seed: a CPU run takes about 3 minutes per variant.
The data are read from the path given and never stored in the repository.
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, dict[str, Any]] = {  # beta 0.1 (the paper's) throughout
    "paper: plain sum (balance beta/2 = 0.05)": {"preference_balance": None},
    "balance 0.15": {"preference_balance": 0.15},
    "balance 0.25 (default)": {"preference_balance": 0.25},
    "balance 1": {"preference_balance": 1.0},
    "balance 0.25, summed log-probs": {"preference_balance": 0.25, "length_normalize": False},
}


def score(model_dir: str, tokenizer, eval_rows: list[dict]) -> dict[str, list[float]]:
    from transformers import AutoModelForCausalLM

    from trl_ulma.evaluation import completion_logps

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    scored = completion_logps(model, tokenizer, eval_rows, batch_size=8, max_length=256)
    logps = [total / max(count, 1) for total, count in scored]  # mean per-token log-prob of each completion
    return {
        "positive": [lp for lp, row in zip(logps, eval_rows) if row["label"]],
        "negative": [lp for lp, row in zip(logps, eval_rows) if not row["label"]],
    }


def compare(base: dict[str, list[float]], policy: dict[str, list[float]]) -> dict[str, float]:
    """Changes against the base model on the held-out rows (chosen and rejected alternate: one pair per prompt)."""

    def mean(values):
        return sum(values) / len(values)

    d_pos = [p - b for p, b in zip(policy["positive"], base["positive"])]
    d_neg = [p - b for p, b in zip(policy["negative"], base["negative"])]
    return {
        "positive_logp_change": mean(d_pos),
        "negative_logp_change": mean(d_neg),
        "perplexity_chosen": math.exp(-mean(policy["positive"])),
        "pair_accuracy": mean([float(p > n) for p, n in zip(d_pos, d_neg)]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/hh-rlhf-harmless-base-test.jsonl.gz"))
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a default model name or a local folder")
    parser.add_argument("--train_pairs", type=int, default=256)
    parser.add_argument("--eval_prompts", type=int, default=48)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=3e-5)
    parser.add_argument("--variants", nargs="*", help="labels from VARIANTS (default: all)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/ulma-sensitivity-hh.json"))
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from trl_ulma import ULMAConfig, ULMATrainer
    from trl_ulma.data import split_by_prompt
    from trl_ulma.files import load_data
    from trl_ulma.formats import hh_to_pointwise
    from trl_ulma.default_models import DEFAULT_MODELS, default_model_path

    model = str(default_model_path(args.model)) if args.model in DEFAULT_MODELS else args.model
    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = hh_to_pointwise(load_data(args.data)["train"], drop_invalid=True)
    train, held_out = split_by_prompt(rows, args.eval_prompts, seed=0, train_prompts=args.train_pairs)
    eval_rows = held_out.to_list()
    base = score(model, tokenizer, eval_rows)
    results = {"base": compare(base, base) | {"pair_accuracy": None}}  # no change, so nothing to compare
    print(f"{len(train)} training rows, {len(eval_rows)} held-out rows; base: {results['base']}")
    variants = {label: VARIANTS[label] for label in args.variants} if args.variants else VARIANTS
    for label, fields in variants.items():
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as output_dir:
            config = ULMAConfig(
                output_dir=output_dir,
                use_cpu=True,
                bf16=False,
                gradient_checkpointing=False,
                per_device_train_batch_size=args.batch_size,
                max_steps=args.steps,
                learning_rate=args.learning_rate,
                max_length=256,
                logging_steps=args.steps,
                save_strategy="no",
                report_to="none",
                seed=0,
                disable_tqdm=True,
                beta=0.1,
                **fields,
            )
            trainer = ULMATrainer(model, args=config, train_dataset=train, processing_class=tokenizer)
            trainer.train()
            trainer.save_model(output_dir)
            results[label] = compare(base, score(output_dir, tokenizer, eval_rows))
        results[label]["seconds"] = time.perf_counter() - start
        print(f"{label}: {results[label]}", flush=True)

    header = (
        "| variant | positives' log-prob change | negatives' log-prob change | perplexity of chosen | pair accuracy |"
    )
    lines = [header, "|---|---|---|---|---|"]
    for label, m in results.items():
        accuracy = "" if m["pair_accuracy"] is None else f"{m['pair_accuracy']:.3f}"
        lines.append(
            f"| {label} | {m['positive_logp_change']:+.3f} | {m['negative_logp_change']:+.3f} | "
            f"{m['perplexity_chosen']:.2f} | {accuracy} |"
        )
    table = "\n".join(lines)
    print(table)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"settings": vars(args), "variants": variants, "results": results}
    output.write_text(json.dumps(payload, indent=2) + "\n")
    output.with_suffix(".md").write_text(table + "\n")
    return payload


if __name__ == "__main__":
    main()
