"""Precompute reference log-probs on one dataset three times: model weights A, then new weights B in the same
directory, then B again.

Run under `accelerate launch`. The precompute cache is keyed by dataset and model: B must get its own values, not
A's, and the third run (a cache hit) B's again. The dataset is on disk, as from `load_dataset`: an in-memory one gets
a random fingerprint, so its cache is never reused. Rank 0 prints `RESULT [values A, values B, values B again]`.
"""

import argparse
import json

from accelerate import PartialState
from accelerate.state import AcceleratorState
from datasets import Dataset, load_from_disk
from transformers import PreTrainedTokenizerFast

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer
from trl_ulma.testing import build_tiny_model, save_tiny_model, toy_dataset


def precompute(dataset: Dataset, model_dir: str, output_dir: str) -> list[float]:
    AcceleratorState._reset_state()  # one process, several trainers: each builds its own DeepSpeed plugin
    args = PointwiseDPOConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, report_to="none", per_device_train_batch_size=2,
        precompute_ref_log_probs=True,
    )
    trainer = PointwiseDPOTrainer(
        model=model_dir, args=args, train_dataset=dataset,
        processing_class=PreTrainedTokenizerFast.from_pretrained(model_dir),
    )
    return list(trainer.train_dataset["ref_logps"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True, help="where to save the model")
    parser.add_argument("--output-dir", required=True, help="for the dataset and the trainers' output")
    options = parser.parse_args()
    state = PartialState()
    if state.is_main_process:
        toy_dataset(8).save_to_disk(f"{options.output_dir}/data")
        save_tiny_model(options.model_dir, seed=0)
    state.wait_for_everyone()
    dataset = load_from_disk(f"{options.output_dir}/data")
    values = [precompute(dataset, options.model_dir, options.output_dir)]
    if state.is_main_process:  # new weights only: the tokenizer, hence the tokenized dataset, stays the same
        tokenizer = PreTrainedTokenizerFast.from_pretrained(options.model_dir)
        build_tiny_model(tokenizer, seed=1).save_pretrained(options.model_dir)
    state.wait_for_everyone()
    values += [precompute(dataset, options.model_dir, options.output_dir) for _ in range(2)]
    if state.is_main_process:
        print("RESULT " + json.dumps(values), flush=True)


if __name__ == "__main__":
    main()
