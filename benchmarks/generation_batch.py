"""How fast the reward loop samples at each generation batch size: the loop's 160 samples of a round (40 review
prompts of `reward_frontier.py` x 4, at most 40 new tokens, pure sampling) from SmolLM2-135M-Instruct.

    python benchmarks/generation_batch.py [--sizes 16 32 64 160] [--threads 2] [--repeats 2]

Prints samples per second per batch size and the ratio to the first size (the best of ``--repeats`` runs of each,
sizes interleaved), and writes `benchmarks/results/generation-batch.{md,json}`. The batch size changes which random
numbers each sample draws, not the distribution the samples come from.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_ulma.default_models import default_model_path
from trl_ulma.sampling import GenerationSettings, sample_completions


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from reward_frontier import split_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 160])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results_dir", default=str(ROOT / "benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train, _ = split_prompts(0, 40, 40)
    prompts = [prompt for prompt in train for _ in range(4)]
    seconds: dict[int, list[float]] = {size: [] for size in args.sizes}
    tokens: dict[int, float] = {}
    for _ in range(args.repeats):
        for size in args.sizes:
            settings = GenerationSettings(max_new_tokens=40, batch_size=size, do_sample=True, top_k=0, seed=0)
            start = time.perf_counter()
            samples = sample_completions(model, tokenizer, prompts, settings)
            seconds[size].append(time.perf_counter() - start)
            tokens[size] = sum(len(s.completion_ids) for s in samples) / len(samples)
    first = min(seconds[args.sizes[0]])
    rows = [
        {
            "batch_size": size,
            "seconds": min(seconds[size]),
            "samples_per_second": len(prompts) / min(seconds[size]),
            "speedup": first / min(seconds[size]),
            "mean_tokens": tokens[size],
        }
        for size in args.sizes
    ]
    command = " ".join(["python benchmarks/generation_batch.py", *sys.argv[1:]])
    lines = [
        "# Reward-loop sampling speed by generation batch size",
        "",
        f"`{command}`: {len(prompts)} samples of at most 40 tokens from SmolLM2-135M-Instruct, float32, "
        f"{args.threads} threads, best of {args.repeats}.",
        "",
        "| batch size | seconds | samples/s | vs the first | mean tokens |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['batch_size']} | {r['seconds']:.1f} | {r['samples_per_second']:.2f} | {r['speedup']:.2f}x | "
            f"{r['mean_tokens']:.1f} |"
            for r in rows
        ),
    ]
    print("\n".join(lines))
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "generation-batch.md").write_text("\n".join(lines) + "\n")
    payload = {"command": command, "threads": args.threads, "repeats": args.repeats, "rows": rows}
    (results / "generation-batch.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
