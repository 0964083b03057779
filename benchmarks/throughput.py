"""Throughput of ULMATrainer and PointwiseDPOTrainer against TRL's DPOTrainer, KTOTrainer and SFTTrainer.

    python benchmarks/throughput.py [--model tiny|default|PATH] [--seq_len 256] [--batch 8] [--positive_share 0.5]
                                    [--steps 8] [--warmup 2] [--rounds 2] [--output benchmarks/results/throughput.json]

Every trainer sees the same rows, truncated to the same length (`--seq_len` tokens: half prompt, half completion),
with the same number of sequences per micro-batch (`--batch`; DPO gets `--batch / 2` pairs, i.e. the same rows as
chosen/rejected). Each trainer runs in its own subprocess (so peak memory is its own), `--rounds` times in alternation;
the table reports the median step time of the timed steps after `--warmup` steps, examples/s and tokens/s over the
batch's training sequences (KTO's extra KL sequences are cost, not examples), peak memory (CPU: max RSS;
GPU: `torch.cuda.max_memory_allocated`) and each trainer's ratio to DPOTrainer. Ratios are side by side in one run;
absolute times mean something only on a GPU.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


TRAINERS = ["ULMATrainer", "PointwiseDPOTrainer", "DPOTrainer", "KTOTrainer", "SFTTrainer"]
WORDS = "the of and to in is was for on that with as by it at from his an were are which this be".split()


def make_rows(count: int, positive_share: float, words: int, seed: int = 0) -> list[dict]:
    """Point-wise rows whose prompt and completion each have ``words`` words (longer than needed; truncation fixes
    the length). Rows come in prompt pairs: one positive and one negative completion when possible."""
    rng = random.Random(seed)
    positives = round(count * positive_share)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    return [{"prompt": text(), "completion": " " + text(), "label": i < positives} for i in range(count)]


def model_path(name: str, workdir: Path) -> str:
    if name == "tiny":
        from trl_ulma.testing import save_tiny_model

        return str(save_tiny_model(workdir / "tiny", hidden_size=256))
    if name == "default":
        from trl_ulma.default_models import default_model_path

        return str(default_model_path())
    return name


def worker(options: argparse.Namespace) -> dict:
    """Train one trainer for warmup + steps and measure it (runs in a subprocess)."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer
    from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer

    name, batch = options.worker, options.batch
    gpu = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(options.model_path)
    total_steps = options.warmup + options.steps
    rows = make_rows(batch * total_steps, options.positive_share, words=options.seq_len)
    # One prompt pairs with one positive and one negative completion: interleave positives and negatives
    pos = [r for r in rows if r["label"]]
    neg = [r for r in rows if not r["label"]]
    half = options.seq_len // 2
    common = dict(
        output_dir=tempfile.mkdtemp(), max_steps=total_steps, learning_rate=1e-6, logging_steps=10**6,
        save_strategy="no", report_to="none", gradient_checkpointing=False, bf16=gpu, use_cpu=not gpu,
        per_device_train_batch_size=batch, dataloader_drop_last=True, seed=0, disable_tqdm=True,
    )
    prompt_ids = {r["prompt"]: tokenizer(r["prompt"])["input_ids"][:half] for r in rows}
    for r in rows:  # prompts exactly `half` tokens, so every sequence is truncated to seq_len
        r["prompt"] = tokenizer.decode(prompt_ids[r["prompt"]])
    pointwise = Dataset.from_list(rows).shuffle(seed=0)
    pairs = Dataset.from_list(
        [{"prompt": p["prompt"], "chosen": p["completion"], "rejected": n["completion"]} for p, n in zip(pos, neg)]
    )
    if name in ("ULMATrainer", "PointwiseDPOTrainer"):
        config_class, trainer_class = {"ULMATrainer": (ULMAConfig, ULMATrainer)}.get(
            name, (PointwiseDPOConfig, PointwiseDPOTrainer)
        )
        trainer = trainer_class(
            model=options.model_path, args=config_class(max_length=options.seq_len, **common),
            train_dataset=pointwise, processing_class=tokenizer,
        )
    elif name == "DPOTrainer":
        common["per_device_train_batch_size"] = batch // 2
        trainer = DPOTrainer(
            model=options.model_path, args=DPOConfig(max_length=options.seq_len, **common),
            train_dataset=pairs.select(range(min(len(pairs), (batch // 2) * total_steps))), processing_class=tokenizer,
        )
    elif name == "KTOTrainer":
        trainer = KTOTrainer(
            model=options.model_path, args=KTOConfig(max_length=options.seq_len, **common), train_dataset=pointwise,
            processing_class=tokenizer,
        )
    elif name == "SFTTrainer":
        sft_rows = pointwise.remove_columns("label")
        trainer = SFTTrainer(
            model=options.model_path, args=SFTConfig(max_length=options.seq_len, **common), train_dataset=sft_rows,
            processing_class=tokenizer,
        )
    else:
        raise ValueError(f"unknown trainer {name}")

    class StepTimer(TrainerCallback):
        times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if gpu:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if gpu:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    trainer.add_callback(timer)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = timer.times[options.warmup :]
    step = statistics.median(timed)
    peak = torch.cuda.max_memory_allocated() if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "trainer": name,
        "step_s": step,
        "examples_per_s": batch / step,
        "tokens_per_s": batch * options.seq_len / step,
        "peak_memory_mb": peak / 2**20,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "steps_timed": len(timed),
    }


def run_worker(name: str, options: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--model_path", options.model_path]
    for flag in ("seq_len", "batch", "positive_share", "steps", "warmup"):
        command += [f"--{flag}", str(getattr(options, flag))]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    dpo = next(r for r in results if r["trainer"] == "DPOTrainer")
    lines = [
        "| trainer | step (s) | examples/s | tokens/s | peak memory (MB) | tokens/s vs DPO | memory vs DPO |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['trainer']} | {r['step_s']:.3f} | {r['examples_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
            f"{r['peak_memory_mb']:.0f} | {r['tokens_per_s'] / dpo['tokens_per_s']:.2f}x | "
            f"{r['peak_memory_mb'] / dpo['peak_memory_mb']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, default (SmolLM2-135M-Instruct, offline) or a path")
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="sequences per micro-batch (even)")
    parser.add_argument("--positive_share", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trainers", nargs="+", default=TRAINERS, choices=TRAINERS)
    parser.add_argument("--output", default="benchmarks/results/throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model_path", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(worker(options)))
        return
    if options.batch % 2:
        parser.error("--batch must be even (DPO gets batch / 2 pairs)")
    options.model_path = model_path(options.model, Path(tempfile.mkdtemp()))

    runs: dict[str, list[dict]] = {name: [] for name in options.trainers}
    for round_index in range(options.rounds):
        for name in options.trainers:
            runs[name].append(run_worker(name, options))
            print(f"round {round_index + 1}: {name} {runs[name][-1]['step_s']:.3f} s/step", file=sys.stderr)
    results = []
    for name, measured in runs.items():
        best = dict(min(measured, key=lambda r: r["step_s"]))  # the least disturbed round
        best["step_s_rounds"] = [r["step_s"] for r in measured]
        results.append(best)
    report = table(results)
    print(report)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(options, k) for k in ("model", "seq_len", "batch", "positive_share", "steps", "warmup", "rounds")}
    output.write_text(json.dumps({"settings": settings, "results": results, "table": report}, indent=2))
    print(f"written to {output}")


if __name__ == "__main__":
    main()
