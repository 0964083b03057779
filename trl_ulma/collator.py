"""The batch: the point-wise collator and the one list of what a batch holds.

A prepared row has ``prompt_ids``, ``completion_ids``, ``score`` and optionally ``ref_logps`` (precomputed summed
reference log-probs) and ``log_z`` (a per-prompt baseline). A batch holds the model inputs (``input_ids``,
``attention_mask``), ``completion_mask``, the floats below, which are not model inputs, and, when the trainer asks
for a packed layout, the batch laid out for the forward (`trl_ulma.layout`), built here on the CPU, in the
dataloader, so that the forward reads nothing back from the device.
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers.data.data_collator import DataCollatorMixin
from trl.trainer.utils import pad

from .layout import Layout, build_layout, split_row, truncate_row


ROW_COLUMNS = ("prompt_ids", "completion_ids", "score", "ref_logps", "log_z")  # what the collator reads of a row
OPTIONAL_FLOATS = ("ref_logps", "log_z")  # row columns passed on as float32 when present
# Floats a batch carries besides the model inputs (the trainer adds the step's counts): kept in float32, since
# transformers casts a batch's floats to DeepSpeed's bf16/fp16, which would round summed reference log-probs by whole
# nats, step counts above 256 and scores near the threshold
EXACT_FLOATS = ("score", *OPTIONAL_FLOATS, "group_counts", "step_counts")
# The batch laid out (`Layout`), and the negatives' rows and their own layout (a reference forward on negatives only)
LAYOUTS = ("layout", "negatives", "negatives_layout")
NOT_MODEL_INPUTS = ("completion_mask", *EXACT_FLOATS, *LAYOUTS)


def model_kwargs(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The model inputs of ``batch`` (without cache)."""
    return {key: value for key, value in batch.items() if key not in NOT_MODEL_INPUTS} | {"use_cache": False}


def select_rows(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """``batch``'s padded tensors restricted to ``rows``, with the padding columns none of them uses trimmed off."""
    tensors = {key: value for key, value in batch.items() if key not in LAYOUTS}
    length = int(tensors["attention_mask"][rows].sum(1).max())
    return {key: value[rows][:, :length] if value.dim() == 2 else value[rows] for key, value in tensors.items()}


@dataclass
class DataCollatorForPointwisePreference(DataCollatorMixin):
    """Pads point-wise examples into one row per example (not DPO's doubled chosen/rejected batch).

    Each example has ``prompt_ids``, ``completion_ids``, ``score`` and optionally ``ref_logps`` and ``log_z``.
    Returns ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on completion tokens), all right-padded,
    ``score`` as a float tensor and ``ref_logps`` / ``log_z`` when present. Sequences are truncated to
    ``max_length`` before padding, keeping the start (``keep_start``) or the end (``keep_end``).

    ``layout`` other than ``"padded"`` (set by the trainer once its models are set up) also returns the truncated rows
    laid out as ``layout`` (a `Layout`; with ``varlen``, ``padding_free`` as one sequence for FlashAttention, see
    `Layout.varlen`); with ``negatives_below``, the indices of the rows scored below it
    (``negatives``) and their own layout (``negatives_layout``).
    """

    pad_token_id: int
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    layout: str = "padded"
    varlen: bool = False
    negatives_below: float | None = None

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.truncation_mode not in ("keep_start", "keep_end"):
            raise ValueError(f"`truncation_mode` must be 'keep_start' or 'keep_end', got {self.truncation_mode!r}.")
        ids, completion_masks, rows = [], [], []
        for example in examples:
            sequence, mask = truncate_row(
                example["prompt_ids"], example["completion_ids"], self.max_length, self.truncation_mode
            )
            ids.append(torch.tensor(sequence, dtype=torch.long))
            completion_masks.append(torch.tensor(mask, dtype=torch.long))
            rows.append(split_row(sequence, mask))

        def right_pad(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
            return pad(tensors, padding_value=value, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)

        output = {
            "input_ids": right_pad(ids, self.pad_token_id),
            "attention_mask": right_pad([torch.ones_like(t) for t in ids], 0),
            "completion_mask": right_pad(completion_masks, 0),
            "score": torch.tensor([float(example["score"]) for example in examples], dtype=torch.float32),
        }
        for key in OPTIONAL_FLOATS:
            if key in examples[0]:
                output[key] = torch.tensor([example[key] for example in examples], dtype=torch.float32)
        if self.layout != "padded":
            output["layout"] = self._lay_out(rows)
            if self.negatives_below is not None:
                # As the trainer compares them: the float32 scores against the threshold
                negatives = (output["score"] < self.negatives_below).nonzero().flatten()
                output["negatives"] = negatives
                output["negatives_layout"] = self._lay_out([rows[i] for i in negatives.tolist()])
        return output

    def _lay_out(self, rows: list) -> Layout:
        """``rows``, already truncated, laid out as the trainer's forward would from the padded batch."""
        layout = build_layout(rows, self.layout, pad_token_id=self.pad_token_id)
        return layout.varlen() if self.varlen and self.layout == "padding_free" else layout
