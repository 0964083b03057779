"""Throughput of ULMATrainer and PointwiseDPOTrainer against TRL's DPOTrainer, KTOTrainer and SFTTrainer.

    python benchmarks/throughput.py [--model tiny|default|PATH] [--seq_len 256] [--batch 8] [--positive_share 0.5]
                                    [--steps 8] [--warmup 2] [--rounds 2] [--output benchmarks/results/throughput.json]
    python benchmarks/throughput.py --lengths hh [--max_length 512] ...    (rows of real feedback's lengths)

``--lengths fixed`` (default): rows of one length, the setting below. ``--lengths hh``: HH-RLHF harmless pairs made
point-wise, each prompt with a chosen and a rejected completion of their own lengths (the HH sample in ../shared/data
when present, tokenized by the model's tokenizer; otherwise the log-normal fit of it in `HH_FIT`); every trainer at
its defaults, and ULMA and point-wise DPO once per layout (`padded`, `padding_free`, `shared_prompt`); a trainer
named ``NAME[:LAYOUT]@ATTN`` in ``--trainers`` loads the model with that attention implementation (``@flex_attention``:
the packed layouts through FlexAttention's block mask; default sdpa). The table then
reports rows/s, real tokens/s (the rows' own tokens, as a padded batch would count them), the padding share of the
positions the forwards compute, peak memory and the ratios to DPOTrainer and KTOTrainer.

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
LAYOUTS = ("padded", "padding_free", "shared_prompt")
HH_TRAINERS = [
    *(f"{name}:{layout}" for name in ("ULMATrainer", "PointwiseDPOTrainer") for layout in LAYOUTS),
    "DPOTrainer",
    "KTOTrainer",
    "SFTTrainer",
    "SFTTrainer:padding_free",
]
HH_FILE = Path(__file__).resolve().parents[2] / "shared/data/hh-rlhf-harmless-base-test.jsonl.gz"
# Log-normal fit (mean, std of log tokens) of the HH harmless-base test split's 2308 pairs, tokenized as the trainers
# do with SmolLM2's tokenizer and chat template: prompts mean 149 tokens (median 122, max 880), completions mean 47
# (median 32, max 558)
HH_FIT = {"prompt": (4.735, 0.746), "completion": (3.489, 0.857)}
WORDS = "the of and to in is was for on that with as by it at from his an were are which this be".split()


def make_rows(count: int, positive_share: float, words: int, seed: int = 0) -> list[dict]:
    """Point-wise rows whose prompt and completion each have ``words`` words (longer than needed; truncation fixes
    the length). Rows come in prompt pairs: one positive and one negative completion when possible."""
    rng = random.Random(seed)
    positives = round(count * positive_share)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    return [{"prompt": text(), "completion": " " + text(), "label": i < positives} for i in range(count)]


def hh_rows(tokenizer, pairs: int, hh_file: Path = HH_FILE, seed: int = 0) -> list[dict]:
    """``pairs`` HH prompts, each with a positive and a negative completion: the real ones from ``hh_file`` when it
    is there, else texts of `HH_FIT`'s token lengths."""
    rng = random.Random(seed)
    if hh_file.exists():
        import gzip

        from datasets import Dataset

        from trl_ulma.formats import hh_to_pairwise

        with gzip.open(hh_file, "rt") as f:
            raw = [json.loads(line) for line in f]
        data = hh_to_pairwise(Dataset.from_list(rng.sample(raw, min(len(raw), pairs + 8))), drop_invalid=True)
        chosen = [{"prompt": r["prompt"], "completion": r["chosen"], "label": True} for r in data]
        rejected = [{"prompt": r["prompt"], "completion": r["rejected"], "label": False} for r in data]
        return [row for pair in zip(chosen, rejected) for row in pair][: 2 * pairs]
    ids = tokenizer(" ".join(rng.choice(WORDS) for _ in range(4000)))["input_ids"]

    def text(part: str) -> str:
        length = min(len(ids), max(2, round(rng.lognormvariate(*HH_FIT[part]))))
        start = rng.randrange(len(ids) - length + 1)
        return tokenizer.decode(ids[start : start + length])

    rows = []
    for _ in range(pairs):
        prompt = text("prompt")
        rows += [{"prompt": prompt, "completion": " " + text("completion"), "label": label} for label in (True, False)]
    return rows


def random_init(directory: Path, workdir: Path) -> str:
    """A model directory holding a config and a tokenizer but no weights, with random weights saved beside the
    tokenizer (throughput does not depend on the weights' values)."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    target = workdir / "random-init"
    shutil.copytree(directory, target)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(directory)).save_pretrained(target)
    print(f"{directory} has no weights: random weights, saved to {target}", file=sys.stderr)
    return str(target)


def model_path(name: str, workdir: Path) -> str:
    if name == "tiny":
        from trl_ulma.testing import save_tiny_model

        return str(save_tiny_model(workdir / "tiny", hidden_size=256))
    if name == "default":
        from trl_ulma.default_models import default_model_path

        return str(default_model_path())
    if Path(name).is_dir() and not any(Path(name).glob("*.safetensors")) and not any(Path(name).glob("*.bin")):
        return random_init(Path(name), workdir)
    return name


def worker(options: argparse.Namespace) -> dict:
    """Train one trainer for warmup + steps and measure it (runs in a subprocess)."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer
    from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer

    torch.set_num_threads(options.threads)
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

    step, peak, timed = measure(trainer, options.warmup)
    return {
        "trainer": name,
        "step_s": step,
        "examples_per_s": batch / step,
        "tokens_per_s": batch * options.seq_len / step,
        "peak_memory_mb": peak / 2**20,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "steps_timed": len(timed),
    }


def measure(trainer, warmup: int) -> tuple[float, float, list[float]]:
    """Train; the median time of the steps after ``warmup``, the peak memory (bytes) and the timed steps."""
    import torch
    from transformers import TrainerCallback

    gpu = torch.cuda.is_available()

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
    timed = timer.times[warmup:]
    peak = torch.cuda.max_memory_allocated() if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return statistics.median(timed), peak, timed


class ForwardCounter:
    """Counts the positions each forward of a model computes, and how many of them are padding: from a 2D attention
    mask, or from the `trl_ulma.layout.Layout` whose inputs the forward takes for a 4D one."""

    def __init__(self, model):
        from trl_ulma.layout import Layout

        self.computed = self.real = 0
        self.layout = None
        model_inputs = Layout.model_inputs

        def recording_inputs(layout, *args, **kwargs):
            self.layout = layout  # the forward that follows runs this layout
            return model_inputs(layout, *args, **kwargs)

        Layout.model_inputs = recording_inputs
        model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        ids, mask = kwargs.get("input_ids", args[0] if args else None), kwargs.get("attention_mask")
        if ids is None:
            return
        self.computed += ids.numel()
        if mask is not None and mask.dim() == 4:
            self.real += self.layout.num_tokens
        else:
            self.real += ids.numel() if mask is None else int(mask.sum())


class TimedCollator:
    """The trainer's collator, timed: the dataloader's CPU work per batch (the layout included, for the trainers that
    lay out their batches there), outside the step the `StepTimer` times."""

    def __init__(self, collator):
        self.collator, self.seconds, self.calls = collator, 0.0, 0

    def __call__(self, examples):
        start = time.perf_counter()
        batch = self.collator(examples)
        self.seconds, self.calls = self.seconds + time.perf_counter() - start, self.calls + 1
        return batch


def hh_worker(options: argparse.Namespace) -> dict:
    """One trainer (``name[:layout]``) on HH-length rows, measured (runs in a subprocess)."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer
    from trl_ulma.preparation import tokenize_row

    torch.set_num_threads(options.threads)
    spec, _, attn = options.worker.partition("@")
    name, _, layout = spec.partition(":")
    batch, gpu = options.batch, torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(options.model_path)
    total_steps = options.warmup + options.steps
    rows = hh_rows(tokenizer, batch * total_steps // 2 + batch, Path(options.hh_file))
    pointwise = Dataset.from_list(rows)
    # In dataset order, every trainer reads the same rows in the same batches (a prompt's two rows side by side; DPO
    # the same rows as pairs), so step times differ by the trainer alone
    common = dict(
        output_dir=tempfile.mkdtemp(), max_steps=total_steps, learning_rate=1e-6, logging_steps=10**6,
        save_strategy="no", report_to="none", gradient_checkpointing=False, bf16=gpu, use_cpu=not gpu,
        per_device_train_batch_size=batch, dataloader_drop_last=True, seed=0, disable_tqdm=True,
        max_length=options.max_length, train_sampling_strategy="sequential",
        model_init_kwargs={"attn_implementation": attn or "sdpa"},
    )
    if name in ("ULMATrainer", "PointwiseDPOTrainer"):
        config_class, trainer_class = {"ULMATrainer": (ULMAConfig, ULMATrainer)}.get(
            name, (PointwiseDPOConfig, PointwiseDPOTrainer)
        )
        args = config_class(layout=layout, **common)
        trainer = trainer_class(options.model_path, args=args, train_dataset=pointwise, processing_class=tokenizer)
    elif name == "DPOTrainer":
        pairs = [
            {"prompt": p["prompt"], "chosen": p["completion"], "rejected": n["completion"]}
            for p, n in zip(rows[::2], rows[1::2])
        ]
        args = DPOConfig(**common | {"per_device_train_batch_size": batch // 2})
        trainer = DPOTrainer(options.model_path, args=args, train_dataset=Dataset.from_list(pairs),
                             processing_class=tokenizer)
    elif name == "KTOTrainer":
        trainer = KTOTrainer(options.model_path, args=KTOConfig(**common), train_dataset=pointwise,
                             processing_class=tokenizer)
    elif name == "SFTTrainer":
        # TRL's padding_free without packing does not truncate: max_length=None there (HH rows rarely pass 512)
        free = {"padding_free": True, "max_length": None} if layout == "padding_free" else {}
        args = SFTConfig(**common | free)
        trainer = SFTTrainer(options.model_path, args=args, train_dataset=pointwise.remove_columns("label"),
                             processing_class=tokenizer)
    else:
        raise ValueError(f"unknown trainer {name}")
    counter = ForwardCounter(trainer.model)
    trainer.data_collator = collator = TimedCollator(trainer.data_collator)
    _, peak, timed = measure(trainer, options.warmup)
    step = statistics.fmean(timed)  # the same batches for every trainer: the mean over them
    # The timed rows' own tokens (prompt + completion, cut at max_length), as a padded batch counts them
    timed_rows = rows[options.warmup * batch : total_steps * batch]
    tokenized = [tokenize_row({"prompt": r["prompt"], "completion": r["completion"]}, tokenizer) for r in timed_rows]
    lengths = [min(options.max_length, len(t["prompt_ids"]) + len(t["completion_ids"])) for t in tokenized]
    return {
        "trainer": options.worker,
        "step_s": step,
        "rows_per_s": batch / step,
        "real_tokens_per_s": batch * statistics.fmean(lengths) / step,
        "padding_share": 1 - counter.real / counter.computed,
        "collate_s": collator.seconds / max(collator.calls, 1),
        "peak_memory_mb": peak / 2**20,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "steps_timed": len(timed),
    }


def run_worker(name: str, options: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--model_path", options.model_path]
    flags = ("seq_len", "batch", "positive_share", "steps", "warmup", "lengths", "max_length", "threads", "hh_file")
    for flag in flags:
        command += [f"--{flag}", str(getattr(options, flag))]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def hh_table(results: list[dict]) -> str:
    def ratio(r: dict, name: str) -> str:
        base = next((b for b in results if b["trainer"] == name), None)
        return f"{r['rows_per_s'] / base['rows_per_s']:.2f}x" if base else ""

    padded = {r["trainer"].split(":")[0]: r for r in results if r["trainer"].endswith(":padded")}
    lines = [
        "| trainer | step (s) | collate (s per batch, outside the step) | rows/s | real tokens/s | padding share | "
        "peak memory (MB) | rows/s vs DPO | rows/s vs KTO | memory vs own padded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        own = padded.get(r["trainer"].split(":")[0])
        memory = f"{r['peak_memory_mb'] / own['peak_memory_mb']:.2f}x" if own else ""
        lines.append(
            f"| {r['trainer']} | {r['step_s']:.3f} | {r.get('collate_s', float('nan')):.4f} | {r['rows_per_s']:.2f} | "
            f"{r['real_tokens_per_s']:.0f} | "
            f"{r['padding_share']:.0%} | {r['peak_memory_mb']:.0f} | {ratio(r, 'DPOTrainer')} | "
            f"{ratio(r, 'KTOTrainer')} | {memory} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("--trainers", nargs="+", help=f"default: {TRAINERS}; with --lengths hh: {HH_TRAINERS}")
    parser.add_argument("--lengths", choices=["fixed", "hh"], default="fixed")
    parser.add_argument("--max_length", type=int, default=512, help="--lengths hh: the trainers' max_length")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker (CPU)")
    parser.add_argument("--hh_file", default=str(HH_FILE), help="--lengths hh: the HH sample (else `HH_FIT`)")
    parser.add_argument("--output", default="benchmarks/results/throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model_path", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps((hh_worker if options.lengths == "hh" else worker)(options)))
        return
    options.trainers = options.trainers or (HH_TRAINERS if options.lengths == "hh" else TRAINERS)
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
    report = (hh_table if options.lengths == "hh" else table)(results)
    print(report)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    keys = ("model", "lengths", "seq_len", "max_length", "batch", "positive_share", "steps", "warmup", "rounds")
    settings = {k: getattr(options, k) for k in keys}
    if options.lengths == "hh":
        settings["hh_rows"] = "the HH sample" if Path(options.hh_file).exists() else "HH_FIT"
    output.write_text(json.dumps({"settings": settings, "results": results, "table": report}, indent=2))
    print(f"written to {output}")


if __name__ == "__main__":
    main()
