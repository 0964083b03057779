"""Batch layouts for a causal LM forward over point-wise rows, and the unpacking of per-token results to rows.

A row is ``(prompt_ids, completion_ids)``; only its completion tokens are scored. Three layouts of a batch of B rows
into K sequences of length L, all described by the same `Layout`:

``padded``         row i is sequence i, right-padded (K = B), with a 2D attention mask: what
                   `DataCollatorForPointwisePreference` builds.
``padding_free``   each row (prompt + completion) is one unit; units are packed into K <= B sequences by a token budget,
                   positions restart at 0 per row, and a 4D mask keeps each token's attention causal within its row.
``shared_prompt``  rows with the same prompt form one unit: the prompt once, the first completion, then for each further
                   completion a copy of the prompt's last token followed by that completion. The copy has the prompt's
                   last position and attends to ``prompt[:-1]`` and itself, so its hidden state is the prompt's last
                   one; the completion after it continues the positions from ``len(prompt)`` and attends to
                   ``prompt[:-1]``, the copy and, causally, itself. A prompt with one completion is padding-free.

Every layout scores exactly the tokens the padded path scores (a completion token at position >= 1 of the row
truncated to ``max_length`` as the collator does), from the same context and positions, so sums of per-token
log-probs, entropies and their gradients match the padded path up to float rounding. Per-token outputs aligned like
TRL's fused LM head (``values[:, t]`` belongs to the prediction of token t + 1: width L - 1 with ``labels``, L with
``shift_labels`` or plain ``logits``) go back to rows with `Layout.row_sums` / `Layout.row_tokens`.

The packed layouts need an attention implementation that takes the layout's mask (sdpa and eager a dense 4D mask,
flex_attention a block mask built from the same per-token ids) and rotary/absolute positions from ``position_ids``:
see `trl_ulma.layout_support`. FlashAttention takes no mask: ``padding_free`` goes through it as one sequence of the
rows' tokens whose positions restart at 0 for each row, from which transformers derives the varlen kernel's sequence
boundaries (`Layout.varlen`); ``shared_prompt``, whose rows share a prefix, cannot.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch

from .layout_support import PACKED_ATTENTION, is_varlen_attention


LayoutMode = Literal["padded", "padding_free", "shared_prompt"]
LAYOUT_MODES = ("padded", "padding_free", "shared_prompt")
PACKED_LAYOUTS = ("padding_free", "shared_prompt")
Row = tuple[Sequence[int], Sequence[int]]


@dataclass
class _Unit:
    """Tokens laid out together (a row, or a prompt group), with per-token positions, branches and scored rows."""

    first_row: int
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    branch: list[int] = field(default_factory=list)  # local branch: a token attends causally within its branch ...
    prefix: list[bool] = field(default_factory=list)  # ... and to every earlier prefix token of its unit
    scored_row: list[int] = field(default_factory=list)  # the row whose scored token this is, -1 if none

    def add(self, tokens: Sequence[int], start: int, branch: int, prefix: int, row: int, scored: Sequence[bool]):
        """Append ``tokens`` as one branch, at positions from ``start``; the first ``prefix`` of them are visible to
        every later branch of the unit; ``scored`` marks the tokens of ``row`` that are scored."""
        self.tokens += tokens
        self.positions += range(start, start + len(tokens))
        self.branch += [branch] * len(tokens)
        self.prefix += [i < prefix for i in range(len(tokens))]
        self.scored_row += [row if s else -1 for s in scored]


@dataclass
class Layout:
    """A batch of rows laid out for one causal LM forward, and how per-token results map back to the rows.

    Tensors: ``input_ids``, ``position_ids``, ``row_index``, ``token_slot``, ``sequence_mask``, ``unit_id``,
    ``branch_id`` and ``prefix`` are (K, L). A token may attend an earlier token of its sequence when both are in the
    same unit (a row, or a prompt group; each padding token is a unit of its own) and on the same branch, or the
    earlier one is a prefix token (the shared prompt): `attention_mask` spells that out densely, `model_inputs` in the
    form the attention implementation takes. ``row_index[k, t]`` is the row whose
    token ``input_ids[k, t + 1]`` is scored by the prediction at position t, -1 where nothing is scored (the last
    column always); ``token_slot[k, t]`` is that token's index among its row's scored tokens. ``sequence_mask`` is True
    on laid-out tokens (not padding). ``row_lengths`` (B,) is each row's length after truncation: the tokens the padded
    path attends; ``row_counts`` (B,) its scored tokens. ``rows`` are the builder's rows. Nothing a forward calls on
    it reads a value back from the device.
    """

    mode: str
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    unit_id: torch.Tensor
    branch_id: torch.Tensor
    prefix: torch.Tensor
    row_index: torch.Tensor
    token_slot: torch.Tensor
    sequence_mask: torch.Tensor
    row_lengths: torch.Tensor
    row_counts: torch.Tensor  # (B,) each row's scored tokens, counted on the CPU when the layout is built
    rows: tuple[Row, ...]
    width: int  # the most scored tokens of a row: the width of `row_tokens`, known on the CPU
    cu_seq_lens: torch.Tensor | None = None  # `varlen`: where each row starts (int32), and the longest row's length,
    max_length: int = 0  # given to FlashAttention so that it reads none of them back from the device

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def num_tokens(self) -> int:
        """Tokens laid out (padding excluded): what the forward actually processes, less than
        ``row_lengths.sum()`` when prompts are shared."""
        return int(self.sequence_mask.sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Layout":
        """The layout on ``device`` (accelerate's `send_to_device` moves a batch's layout with it)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: v.to(device, non_blocking=non_blocking) for k, v in values.items() if isinstance(v, torch.Tensor)}
        return replace(self, **moved)

    def may_attend(self, k, query, key) -> torch.Tensor:
        """Whether position ``query`` of sequence ``k`` attends position ``key`` (indices or broadcastable index
        tensors): an earlier or the same token of its unit, on its branch or a prefix (shared prompt) token."""
        same_branch = (self.branch_id[k, query] == self.branch_id[k, key]) | self.prefix[k, key]
        return (key <= query) & (self.unit_id[k, query] == self.unit_id[k, key]) & same_branch

    @property
    def attention_mask(self) -> torch.Tensor:
        """(K, L) 0/1 for ``padded``; (K, 1, L, L) bool for the packed layouts (True: may attend), on the layout's
        device."""
        if self.mode == "padded":
            return self.sequence_mask.long()
        num_seqs, length = self.input_ids.shape
        positions = torch.arange(length, device=self.unit_id.device)
        k = torch.arange(num_seqs, device=positions.device)[:, None, None]
        return self.may_attend(k, positions[None, :, None], positions[None, None, :])[:, None]

    def block_mask(self, block_size: int = 128):
        """The packed mask as a FlexAttention ``BlockMask`` of ``block_size`` blocks, on the layout's device: the
        attention kernel skips the blocks with no visible token (building it evaluates every (query, key) once)."""
        from torch.nn.attention.flex_attention import create_block_mask

        def mask_mod(k, head, query, key):
            return self.may_attend(k, query, key)

        num_seqs, length = self.input_ids.shape
        return create_block_mask(
            mask_mod, num_seqs, None, length, length, device=self.unit_id.device, BLOCK_SIZE=block_size
        )

    def varlen(self) -> "Layout":
        """``padding_free`` as one sequence of its laid-out tokens (padding dropped), for FlashAttention's varlen
        kernel: each row starts at position 0, where transformers starts a new sequence (and, given ``position_ids``
        and no mask, so do its sdpa, eager and flex masks). Maps back to the rows like the layout itself."""
        if self.mode != "padding_free":
            raise ValueError(f"Only the padding_free layout runs as one varlen sequence, not {self.mode!r}.")
        kept = self.sequence_mask
        # After a row's last token comes padding or the sequence's end, whose prediction is never scored (-1), or the
        # next row's first token, which never is either: the kept tokens' `row_index` stays right
        per_token = {f.name: getattr(self, f.name) for f in fields(self)}  # the (K, L) tensors: of the mask's shape
        values = {k: v[kept][None] for k, v in per_token.items() if getattr(v, "shape", None) == kept.shape}
        positions = values["position_ids"][0]
        ends = torch.tensor([len(positions)], device=positions.device)
        cu_seq_lens = torch.cat([(positions == 0).nonzero().flatten(), ends]).to(torch.int32)
        return replace(self, **values, cu_seq_lens=cu_seq_lens, max_length=int(cu_seq_lens.diff().max()))

    def model_inputs(self, attn_implementation: str = "sdpa", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        """``input_ids``, ``position_ids`` and ``attention_mask`` for the model's forward. The packed layouts' mask is
        boolean for sdpa, additive (0 / finfo(dtype).min) for eager, which adds the mask to its scores (a boolean
        mask would be added as 0/1), and a ``BlockMask`` for flex_attention. FlashAttention gets no mask: one
        `varlen` sequence of ``padding_free``, its rows told apart by their positions and, read by its varlen kernel
        as they are, by ``cu_seq_lens_q/k`` and ``max_length_q/k`` (transformers' `_flash_attention_forward`)."""
        if self.mode == "padded":
            mask = self.attention_mask
        elif is_varlen_attention(attn_implementation) and self.mode == "padding_free":
            if self.cu_seq_lens is None:
                raise ValueError("FlashAttention takes the padding_free layout as one sequence: use `Layout.varlen()`.")
            bounds = {"cu_seq_lens_q": self.cu_seq_lens, "cu_seq_lens_k": self.cu_seq_lens}
            lengths = {"max_length_q": self.max_length, "max_length_k": self.max_length}
            return {"input_ids": self.input_ids, "position_ids": self.position_ids, **bounds, **lengths}
        elif attn_implementation == "flex_attention":
            mask = self.block_mask()
        elif attn_implementation in PACKED_ATTENTION:
            mask = self.attention_mask
            if attn_implementation == "eager":
                additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
                mask = additive.masked_fill(~mask, torch.finfo(dtype).min)
        else:
            raise ValueError(
                f"The {self.mode} layout needs one of {PACKED_ATTENTION} attention, not {attn_implementation!r}"
                + (" (FlashAttention runs padding_free)." if is_varlen_attention(attn_implementation) else ".")
            )
        return {"input_ids": self.input_ids, "position_ids": self.position_ids, "attention_mask": mask}

    def labels(self) -> torch.Tensor:
        """(K, L) ``labels`` for `model(..., labels=...)` (shifted inside the model): each scored token's id, -100
        elsewhere."""
        labels = torch.full_like(self.input_ids, -100)
        labels[:, 1:] = self.input_ids[:, 1:].masked_fill(self.row_index[:, :-1] < 0, -100)
        return labels

    def _scored(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position of ``values`` (K, L - 1 or L), flattened: the row whose token it scores (``num_rows``, a spare
        row dropped after, where none) and the token's slot in its row. Shapes known without reading the device: no
        boolean indexing, whose size a GPU would have to send back to the host."""
        num_seqs, length = self.row_index.shape
        if values.dim() != 2 or values.size(0) != num_seqs or values.size(1) not in (length - 1, length):
            raise ValueError(
                f"Per-token values must be (K, L - 1) or (K, L) with (K, L) = {tuple(self.row_index.shape)}, "
                f"got {tuple(values.shape)}."
            )
        rows = self.row_index[:, : values.size(1)]
        unscored = rows < 0
        slots = self.token_slot[:, : values.size(1)].masked_fill(unscored, 0)
        return rows.masked_fill(unscored, self.num_rows).flatten(), slots.flatten()

    def row_sums(self, values: torch.Tensor) -> torch.Tensor:
        """(B,) sum of ``values`` (K, L - 1 or L, aligned left like ``log_probs``) over each row's scored tokens, in
        row order. Differentiable; unscored positions go to the spare row (no -inf/NaN leak). Booleans are counted."""
        rows, _ = self._scored(values)
        picked = values.flatten() if values.is_floating_point() else values.flatten().long()
        return picked.new_zeros(self.num_rows + 1).index_add(0, rows, picked)[:-1]

    def row_tokens(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(B, T) each row's scored-token ``values`` in order, right-padded with ``fill``; T the most scored tokens
        of a row. With `token_mask`, a stand-in for the padded path's per-token tensors (token-level losses)."""
        rows, slots = self._scored(values)
        out = values.new_full((self.num_rows + 1, max(self.width, 1)), fill)
        return out.index_put((rows, slots), values.flatten())[:-1, : self.width]

    def token_mask(self) -> torch.Tensor:
        """(B, T) bool, True on the entries of `row_tokens` that hold a scored token."""
        counts = self.row_counts
        return torch.arange(self.width, device=counts.device)[None, :] < counts[:, None]


def truncate_row(
    prompt_ids: Sequence[int], completion_ids: Sequence[int], max_length: int | None, truncation_mode: str
) -> tuple[list[int], list[int]]:
    """A row's tokens and completion mask (1 on completion tokens) truncated to ``max_length`` exactly as
    `DataCollatorForPointwisePreference` does (``keep_start`` keeps the start, ``keep_end`` the end)."""
    sequence = list(prompt_ids) + list(completion_ids)
    mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    if max_length is not None and len(sequence) > max_length:
        keep = slice(None, max_length) if truncation_mode == "keep_start" else slice(-max_length, None)
        sequence, mask = sequence[keep], mask[keep]
    return sequence, mask


def _row_unit(sequence: list[int], mask: list[int], row: int) -> _Unit:
    """A row alone: positions from 0, causal attention; completion tokens past position 0 scored."""
    unit = _Unit(row)
    unit.add(sequence, 0, 0, 0, row, [bool(m) and j > 0 for j, m in enumerate(mask)])
    return unit


def _group_unit(prompt: list[int], completions: list[tuple[int, list[int]]]) -> _Unit:
    """Rows sharing ``prompt`` (non-empty, untruncated): the prompt and the first completion, then copy + completion
    for each further one (see the module docstring)."""
    size = len(prompt)
    (first_row, first), *others = completions
    unit = _Unit(first_row)
    unit.add(prompt + first, 0, 0, size - 1, first_row, [False] * size + [True] * len(first))
    for branch, (row, completion) in enumerate(others, start=1):
        if completion:  # an empty completion scores nothing: no branch at all
            unit.add([prompt[-1]] + completion, size - 1, branch, 0, row, [False] + [True] * len(completion))
    return unit


def _pack(lengths: list[int], budget: int) -> list[list[int]]:
    """First-fit decreasing: unit indices per bin of at most ``budget`` tokens; a longer unit gets its own bin."""
    bins: list[list[int]] = []
    room: list[int] = []
    for unit in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, free in enumerate(room):
            if lengths[unit] <= free:
                bins[b].append(unit)
                room[b] -= lengths[unit]
                break
        else:
            bins.append([unit])
            room.append(budget - lengths[unit])
    return bins


def build_layout(
    rows: Sequence[Row],
    mode: LayoutMode = "shared_prompt",
    max_length: int | None = None,
    truncation_mode: str = "keep_start",
    budget: int | None = None,
    pad_token_id: int = 0,
    pad_to_multiple_of: int | None = None,
) -> Layout:
    """Lay out ``rows`` (``(prompt_ids, completion_ids)`` in batch order, any subset of a batch) as ``mode``.

    Rows are truncated to ``max_length`` like the padded collator. In ``shared_prompt``, rows with equal prompts share
    one copy of it, except a row whose prompt is empty or would be cut (``keep_end`` cutting anything,
    ``keep_start`` cutting into the prompt), which is laid out alone. ``budget``: the token capacity of a packed
    sequence (default: the longest unit; a unit longer than the budget gets its own sequence). ``pad_to_multiple_of``
    rounds L up.
    """
    if mode not in LAYOUT_MODES:
        raise ValueError(f"`mode` must be one of {LAYOUT_MODES}, got {mode!r}.")
    if truncation_mode not in ("keep_start", "keep_end"):
        raise ValueError(f"`truncation_mode` must be 'keep_start' or 'keep_end', got {truncation_mode!r}.")
    options = dict(
        max_length=max_length,
        truncation_mode=truncation_mode,
        budget=budget,
        pad_token_id=pad_token_id,
        pad_to_multiple_of=pad_to_multiple_of,
    )
    rows = tuple((list(prompt), list(completion)) for prompt, completion in rows)
    truncated = [truncate_row(prompt, completion, max_length, truncation_mode) for prompt, completion in rows]

    units: list[_Unit] = []
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for row, ((prompt, completion), (sequence, _)) in enumerate(zip(rows, truncated, strict=True)):
        # A prompt is shared only if it survives truncation whole, so that every row of its group sees the same one
        cut = len(sequence) < len(prompt) + len(completion)
        kept_whole = not cut or (truncation_mode == "keep_start" and len(prompt) < max_length)
        if mode == "shared_prompt" and prompt and kept_whole:
            groups.setdefault(tuple(prompt), []).append((row, sequence[len(prompt) :]))
        else:
            units.append(_row_unit(*truncated[row], row))
    units += [_group_unit(list(prompt), members) for prompt, members in groups.items()]
    units.sort(key=lambda unit: unit.first_row)  # padded: unit i is row i

    if mode == "padded":
        bins = [[i] for i in range(len(units))]
    else:
        lengths = [len(unit.tokens) for unit in units]
        bins = _pack(lengths, max(lengths, default=0) if budget is None else budget)
    return _assemble(mode, units, bins, rows, truncated, options)


def _assemble(
    mode: str,
    units: list[_Unit],
    bins: list[list[int]],
    rows: tuple[Row, ...],
    truncated: list[tuple[list[int], list[int]]],
    options: dict[str, Any],
) -> Layout:
    """The tensors of a layout from its units and their bins."""
    num_seqs = len(bins)
    length = max((sum(len(units[u].tokens) for u in b) for b in bins), default=0)
    multiple = options["pad_to_multiple_of"]
    if multiple:
        length = -(-length // multiple) * multiple
    length = max(length, 1)
    input_ids = torch.full((num_seqs, length), options["pad_token_id"], dtype=torch.long)
    position_ids = torch.zeros((num_seqs, length), dtype=torch.long)
    unit_id = -torch.arange(1, num_seqs * length + 1).view(num_seqs, length)  # padding: a unit of its own per token
    branch_id = unit_id.clone()
    prefix = torch.zeros((num_seqs, length), dtype=torch.bool)
    scored_row = torch.full((num_seqs, length), -1, dtype=torch.long)
    next_branch = 0
    for k, b in enumerate(bins):
        start = 0
        for u in b:
            unit, end = units[u], start + len(units[u].tokens)
            input_ids[k, start:end] = torch.tensor(unit.tokens, dtype=torch.long)
            position_ids[k, start:end] = torch.tensor(unit.positions, dtype=torch.long)
            unit_id[k, start:end] = u
            branch_id[k, start:end] = next_branch + torch.tensor(unit.branch, dtype=torch.long)
            prefix[k, start:end] = torch.tensor(unit.prefix, dtype=torch.bool)
            scored_row[k, start:end] = torch.tensor(unit.scored_row, dtype=torch.long)
            next_branch += max(unit.branch, default=0) + 1
            start = end
    sequence_mask = unit_id >= 0
    if mode == "padded":
        position_ids = torch.arange(length).expand(num_seqs, length).clone()

    # Position t predicts token t + 1: shift the scored rows left by one
    row_index = torch.full_like(scored_row, -1)
    row_index[:, :-1] = scored_row[:, 1:]
    # A scored token's index within its row: its rank among the row's scored tokens, in layout order
    token_slot = torch.full_like(row_index, -1)
    flat = row_index.flatten()
    where = (flat >= 0).nonzero().flatten()
    if len(where):
        order = torch.argsort(flat[where], stable=True)  # layout order within each row is the row's token order
        sorted_rows = flat[where][order]
        starts = torch.searchsorted(sorted_rows, sorted_rows, right=False)
        slots = torch.empty_like(order)
        slots[order] = torch.arange(len(order)) - starts
        token_slot.view(-1)[where] = slots
    row_lengths = torch.tensor([len(sequence) for sequence, _ in truncated], dtype=torch.long)
    counts = torch.bincount(row_index[row_index >= 0], minlength=len(rows))
    return Layout(
        mode=mode,
        input_ids=input_ids,
        position_ids=position_ids,
        unit_id=unit_id,
        branch_id=branch_id,
        prefix=prefix,
        row_index=row_index,
        token_slot=token_slot,
        sequence_mask=sequence_mask,
        row_lengths=row_lengths,
        row_counts=counts,
        rows=rows,
        width=int(counts.max()) if len(rows) else 0,
    )


def split_row(sequence: Sequence[int], completion_mask: Sequence[int]) -> Row:
    """A truncated row's ``(prompt_ids, completion_ids)``: the tokens before its first completion token, the rest."""
    start = next((i for i, c in enumerate(completion_mask) if c), len(sequence))
    return list(sequence[:start]), list(sequence[start:])


def rows_from_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor) -> list[Row]:
    """The ``(prompt_ids, completion_ids)`` rows of a right-padded batch (already truncated by the collator)."""
    rows = []
    for ids, attended, completion in zip(
        input_ids.tolist(), attention_mask.tolist(), completion_mask.tolist(), strict=True
    ):
        length = sum(attended)
        rows.append(split_row(ids[:length], completion[:length]))
    return rows


class PromptGroupSampler(torch.utils.data.Sampler[int]):
    """A random order of the rows in which the rows of one prompt come together: the prompts are shuffled, each
    prompt's rows follow one another (in random order), so a batch holds whole groups, which the shared-prompt layout
    runs through one copy of the prompt. A new order each epoch; the first from ``seed``."""

    def __init__(self, prompts: Sequence[Any], seed: int = 0):
        groups: dict[Any, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(index)
        self.groups = list(groups.values())
        self.num_rows = len(prompts)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self):
        for group in torch.randperm(len(self.groups), generator=self.generator).tolist():
            rows = self.groups[group]
            yield from (rows[i] for i in torch.randperm(len(rows), generator=self.generator).tolist())
