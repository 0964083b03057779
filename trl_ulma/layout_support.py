"""Which models can run the packed layouts (`trl_ulma.layout`), and the layout a trainer's models get.

The packed layouts need an attention implementation that takes the layout's mask (sdpa and eager a dense 4D mask,
flex_attention a block mask), positions from ``position_ids``, and causal full attention in every layer.
FlashAttention takes no mask: it runs ``padding_free`` as one sequence whose positions restart at 0 for each row.
"""

import inspect
from typing import Any


# Attention implementations that apply the packed layouts' mask: sdpa takes it as a dense boolean 4D mask, eager as an
# additive float one, flex_attention as a BlockMask (only the blocks with a visible token are computed)
PACKED_ATTENTION = ("sdpa", "eager", "flex_attention")


def is_varlen_attention(attn_implementation: str | None) -> bool:
    """FlashAttention 2/3, built in or from the kernels hub: no mask, sequence boundaries from ``position_ids``."""
    name = str(attn_implementation or "")
    return name.startswith("flash_attention") or "flash-attn" in name or "flash_attn" in name


# Config fields listing per-layer block kinds in hybrid or recurrent models, and the entries that are full attention
_BLOCK_TYPE_FIELDS = ("layer_types", "layers_block_type", "layer_block_types", "block_types", "layers_type")
_FULL_ATTENTION = ("full_attention", "attention", "attn", "global", "global_attention", "full")
_WINDOWED_ATTENTION = ("sliding_attention", "chunked_attention")  # exact while every row fits in the window
_RECURRENT_MODEL_TYPES = ("mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm", "recurrent_gemma", "lfm2")
_ALIBI_MODEL_TYPES = ("bloom", "mpt")


def supports_packed_layout(
    model_or_config: Any, max_length: int | None = None, layout: str = "shared_prompt"
) -> tuple[bool, str]:
    """Whether a model (or its config) can run ``layout`` (``padding_free`` or ``shared_prompt``), and why not.

    Needs: sdpa, eager or flex_attention (they apply the layout's mask; FlashAttention takes none, and runs only
    ``padding_free``, as one varlen sequence), causal full
    attention in every layer (sliding-window or chunked layers are fine only when ``max_length`` fits in the window,
    since the packed mask replaces the window), no recurrent or linear-attention
    layers (their state runs across the whole packed sequence), positions taken from ``position_ids`` (not ALiBi), and
    no prompt-learning adapter (virtual tokens shift the sequence), and no router loss (it reads a 2D mask).
    """
    model = model_or_config if getattr(model_or_config, "config", None) is not None else None
    config = model_or_config if model is None else model.config
    if model is not None and getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        return False, "a prompt-learning PEFT adapter prepends virtual tokens, which the packed layout does not place"
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    implementation = getattr(text_config, "_attn_implementation", None) or getattr(config, "_attn_implementation", None)
    varlen = is_varlen_attention(implementation) and layout == "padding_free"
    if implementation not in PACKED_ATTENTION and not varlen:
        return False, (
            f"attention implementation {implementation!r} does not apply a custom mask: load the model with "
            f"attn_implementation='sdpa' (or 'eager', 'flex_attention'"
            + ("; FlashAttention runs layout='padding_free')" if is_varlen_attention(implementation) else ")")
        )
    if not getattr(text_config, "is_causal", True):
        return False, "the model is not causal"
    model_type = getattr(text_config, "model_type", "")
    if model_type in _RECURRENT_MODEL_TYPES:
        return False, f"{model_type!r} models keep a recurrent state across the whole packed sequence"
    if model_type in _ALIBI_MODEL_TYPES or getattr(text_config, "alibi", False):
        return False, f"{model_type!r} with ALiBi takes its positions from the key index, not from `position_ids`"
    for name in _BLOCK_TYPE_FIELDS:
        kinds = getattr(text_config, name, None)
        if isinstance(kinds, str):
            kinds = [kinds]
        other = sorted({str(kind) for kind in kinds or ()} - set(_FULL_ATTENTION) - set(_WINDOWED_ATTENTION))
        if other:
            return False, f"`{name}` has {other} layers: their state or mask spans the whole packed sequence"
    if getattr(text_config, "output_router_logits", False):
        return False, "the MoE load-balancing loss reads a 2D `attention_mask`; the packed layout's is 4D"
    windows = []
    kinds = set(getattr(text_config, "layer_types", None) or ())
    sliding = getattr(text_config, "sliding_window", None)
    if sliding and getattr(text_config, "use_sliding_window", True) or "sliding_attention" in kinds:
        windows.append(("sliding_window", sliding))
    chunk = getattr(text_config, "attention_chunk_size", None)
    if chunk or "chunked_attention" in kinds:
        windows.append(("attention_chunk_size", chunk))
    for name, window in windows:
        if max_length is None or not window or max_length > window:
            return False, (
                f"{name}={window} is in use and the packed mask replaces it: exact only with max_length <= {window} "
                f"(got max_length={max_length})"
            )
    if model is not None:
        forward = getattr(model, "forward", None)
        try:
            parameters = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            parameters = {}
        takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        if parameters and "position_ids" not in parameters and not takes_any:
            return False, "the model's forward takes no `position_ids`"
    return True, f"{implementation} attention with full causal layers and position ids"


def effective_layout(models: list[Any], max_length: int | None, requested: str) -> tuple[str, str | None]:
    """The layout every one of ``models`` can run, from ``requested`` down: ``shared_prompt`` falls back to
    ``padding_free`` (FlashAttention), then to ``padded``; with the first reason one was refused (None if none)."""
    layout, reason = requested, None
    while layout != "padded":
        refused = [why for fits, why in (supports_packed_layout(m, max_length, layout) for m in models) if not fits]
        if not refused:
            break
        reason = reason or refused[0]
        layout = "padding_free" if layout == "shared_prompt" else "padded"
    return layout, reason
