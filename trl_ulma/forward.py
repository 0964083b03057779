"""The forward: a padded batch in, per-token results per row out, whatever the layout (`trl_ulma.layout`) the rows
go through the model in. TRL's fused LM head gives each token's log-prob without full-vocabulary logits."""

from typing import Any, NamedTuple

import torch

from .collator import model_kwargs
from .layout import build_layout, rows_from_batch
from .layout_support import is_varlen_attention


class TokenOutputs(NamedTuple):
    """A forward's per-token results, (B, T) per row whatever the layout: the log-prob of each scored (completion)
    token, and for metrics its entropy, mean logit and whether it is the top-1 prediction (None when the fused head
    did not compute them). ``mask`` marks the scored tokens; ``outputs`` is the model's output (for its aux loss)."""

    log_probs: torch.Tensor
    mask: torch.Tensor
    entropy: torch.Tensor | None
    mean_logits: torch.Tensor | None
    is_top1: torch.Tensor | None
    outputs: Any


def forward_tokens(
    model, batch: dict[str, torch.Tensor], layout: str, unwrapped, pad_token_id: int, router_logits: bool = False
) -> TokenOutputs:
    """``model``'s per-token results on the completions of ``batch`` through ``layout`` (``"padded"``,
    ``"padding_free"`` or ``"shared_prompt"``). ``unwrapped``: the model inside any wrapper (its config and dtype);
    ``router_logits``: ask a mixture-of-experts model for its router logits (its aux loss)."""
    completion_mask = batch["completion_mask"]
    if layout == "padded":
        labels = batch["input_ids"].masked_fill(completion_mask == 0, -100)
        kwargs = model_kwargs(batch)
        if router_logits:
            kwargs["output_router_logits"] = True
        outputs = model(**kwargs, labels=labels, fused_lm_head=True)
        token_mask = completion_mask[:, 1:]
        width = token_mask.size(1)  # prompt-learning PEFT prepends virtual tokens: keep the real tokens' positions

        def tokens(values):
            return None if values is None else values[:, -width:]

    else:
        attn_implementation = unwrapped.config._attn_implementation
        packed = batch.get("layout")  # laid out by the collator; otherwise here, from the padded batch
        if packed is None:
            rows = rows_from_batch(batch["input_ids"], batch["attention_mask"], completion_mask)
            packed = build_layout(rows, layout, pad_token_id=pad_token_id)
        if layout == "padding_free" and is_varlen_attention(attn_implementation) and packed.cu_seq_lens is None:
            packed = packed.varlen()  # the collator's is one sequence already where every model takes it
        packed = packed.to(completion_mask.device)
        kwargs = packed.model_inputs(attn_implementation, unwrapped.dtype)
        outputs = model(**kwargs, labels=packed.labels(), use_cache=False, fused_lm_head=True)
        token_mask = packed.token_mask()

        def tokens(values):
            return None if values is None else packed.row_tokens(values)

    return TokenOutputs(
        tokens(outputs.log_probs),
        token_mask,
        tokens(outputs.entropy),
        tokens(outputs.mean_logits),
        tokens(outputs.is_top1),
        outputs,
    )
