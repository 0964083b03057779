"""Each packed layout against padded batches, on one device and dtype: per-row summed log-probs of HH-length rows
through SmolLM2 (or any causal LM folder), and the gradient of their weighted sum.

    python benchmarks/layout_exactness.py --model PATH [--dtype bfloat16] [--rows 64] [--attn sdpa flex_attention]
                                          [--output FILE.json]

The padded batch runs with sdpa; each packed layout with each ``--attn`` implementation (FlexAttention: the
layout's block mask; its backward needs a GPU; FlashAttention, e.g. ``flash_attention_2``: padding_free only, as one
varlen sequence). Prints, per layout, the largest difference of a row's log-prob from the padded batch's (absolute, and relative to
the row's |log-prob|) and the relative norm of the gradient difference. In float32 both are rounding (about 1e-6);
in bfloat16 they are bfloat16's rounding of different summation orders, which is the figure to read next to it.
"""

import argparse
import json
import math
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_ulma.layout import PACKED_LAYOUTS, build_layout
from trl_ulma.layout_support import is_varlen_attention


def hh_rows(tokenizer, count: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Token rows of HH-like lengths (log-normal prompt and completion lengths, `throughput.HH_FIT`), two
    completions per prompt, from the tokenizer's vocabulary."""
    rng = random.Random(seed)
    vocab = [i for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids]
    rows = []
    while len(rows) < count:
        prompt = rng.choices(vocab, k=min(400, max(4, int(math.exp(rng.gauss(4.735, 0.746))))))
        for _ in range(2):
            rows.append((prompt, rng.choices(vocab, k=min(200, max(2, int(math.exp(rng.gauss(3.489, 0.857))))))))
    return rows[:count]


def row_logps(model, layout, attn: str) -> torch.Tensor:
    model.set_attn_implementation(attn)
    logits = model(**layout.model_inputs(attn, model.dtype)).logits[:, :-1].float()
    token_logps = logits.log_softmax(-1).gather(-1, layout.input_ids[:, 1:, None]).squeeze(-1)
    return layout.row_sums(token_logps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--attn", nargs="+", default=["sdpa"], help="the packed layouts' attention implementations")
    parser.add_argument("--output")
    options = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, options.dtype)
    model = AutoModelForCausalLM.from_pretrained(options.model, dtype=dtype, attn_implementation="sdpa").to(device)
    tokenizer = AutoTokenizer.from_pretrained(options.model)
    rows = hh_rows(tokenizer, options.rows)
    weights = torch.linspace(-1.0, 2.0, len(rows), device=device)
    results, reference = {}, None
    runs = [("padded", "sdpa")] + [
        (mode, attn)
        for attn in options.attn
        for mode in PACKED_LAYOUTS
        if mode == "padding_free" or not is_varlen_attention(attn)
    ]
    for mode, attn in runs:  # padded first
        model.zero_grad()
        layout = build_layout(rows, mode, pad_token_id=tokenizer.pad_token_id or 0)
        layout = (layout.varlen() if is_varlen_attention(attn) else layout).to(device)
        logps = row_logps(model, layout, attn)
        (weights * logps).sum().backward()
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
        if reference is None:
            reference = (logps.detach(), grads)
            continue
        difference = (logps.detach() - reference[0]).abs()
        name = mode if attn == "sdpa" else f"{mode}@{attn}"
        results[name] = {
            "max_abs_logp_difference": difference.max().item(),
            "max_relative_logp_difference": (difference / reference[0].abs().clamp(min=1e-6)).max().item(),
            "relative_gradient_difference": ((grads - reference[1]).norm() / reference[1].norm()).item(),
        }
        print(f"{name:>29} vs padded ({options.dtype}, {device}): " + ", ".join(f"{k} {v:.2e}" for k, v in results[name].items()))
    summary = {"dtype": options.dtype, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
               "rows": len(rows), "mean_row_logp": reference[0].mean().item(), "layouts": results}
    if options.output:
        with open(options.output, "w") as file:
            json.dump(summary, file, indent=2)


if __name__ == "__main__":
    main()
