"""Rows to token ids (`trl_ulma.preparation`): the prompt/completion split, chat-template arguments, and the rows
that the chat template or the length limit change, each reported."""

import logging

import pytest
from datasets import Dataset, IterableDataset

from trl_ulma import ULMATrainer
from trl_ulma.preparation import PromptFitsFilter, tokenize_row
from trl_ulma.testing import CHATML_TEMPLATE, toy_rows


# A template whose generation prompt opens a thinking block that a rendered reply does not have (as Qwen3's does)
THINKING_TEMPLATE = CHATML_TEMPLATE.replace(
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}",
)
TOOLS_TEMPLATE = "{% if tools %}tools: {% for tool in tools %}{{ tool['name'] }} {% endfor %}\n{% endif %}" + CHATML_TEMPLATE


def chat_row(**extra) -> dict:
    return {"prompt": [{"role": "user", "content": "Tell me about a poem."}],
            "completion": [{"role": "assistant", "content": "Here is a kind answer."}], **extra}


def test_text_rows_split_into_prompt_and_completion(tokenizer):
    row = tokenize_row({"prompt": "Tell me about a poem.", "completion": " Here is a kind answer."}, tokenizer)
    full = tokenizer("Tell me about a poem. Here is a kind answer.")["input_ids"]
    assert row["prompt_ids"] + row["completion_ids"] == full
    assert row["prompt_ids"] == tokenizer("Tell me about a poem.")["input_ids"] and row["prompt_cut"] == 0


def test_tools_and_chat_template_kwargs_reach_the_template(tokenizer):
    tokenizer.chat_template = TOOLS_TEMPLATE
    plain = tokenize_row(chat_row(), tokenizer)
    with_tools = tokenize_row(chat_row(tools=[{"name": "search"}, {"name": "calculator"}]), tokenizer)
    as_json = tokenize_row(chat_row(tools='[{"name": "search"}, {"name": "calculator"}]'), tokenizer)
    assert tokenizer.decode(with_tools["prompt_ids"]).startswith("tools: search calculator")
    assert with_tools == as_json and with_tools["completion_ids"] == plain["completion_ids"]
    assert not tokenizer.decode(plain["prompt_ids"]).startswith("tools")

    tokenizer.chat_template = "{% if shout %}LOUD {% endif %}" + CHATML_TEMPLATE
    loud = tokenize_row(chat_row(chat_template_kwargs={"shout": True}), tokenizer)
    assert tokenizer.decode(loud["prompt_ids"]).startswith("LOUD")


def test_a_prompt_the_reply_renders_differently_is_counted_and_reported(model_dir, tokenizer, make_args, caplog):
    tokenizer.chat_template = THINKING_TEMPLATE
    row = tokenize_row(chat_row(), tokenizer)
    generation_prompt = tokenizer.apply_chat_template(chat_row()["prompt"], add_generation_prompt=True,
                                                      return_dict=True)["input_ids"]
    assert row["prompt_cut"] == len(generation_prompt) - len(row["prompt_ids"]) > 0

    rows = [chat_row(label=label) for label in (True, False, True, False)]
    with caplog.at_level(logging.WARNING):
        ULMATrainer(model=model_dir, args=make_args(), train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    assert "in 4 of 4 rows (first: [0, 1, 2, 3]) the tokenized prompt is not a prefix" in caplog.text


def test_plain_chat_template_gives_no_warning(model_dir, tokenizer, make_args, caplog):
    rows = [chat_row(label=label) for label in (True, False)]
    with caplog.at_level(logging.WARNING):
        ULMATrainer(model=model_dir, args=make_args(), train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    assert "not a prefix" not in caplog.text


def test_streamed_rows_dropped_by_the_length_limit_are_counted(model_dir, tokenizer, make_args, caplog):
    rows = toy_rows(8)
    for row in rows[:3]:
        row["prompt"] = "a very long prompt " * 40
    stream = IterableDataset.from_generator(lambda: iter(rows))
    with caplog.at_level(logging.WARNING):
        trainer = ULMATrainer(model=model_dir, args=make_args(max_length=64, max_steps=1), train_dataset=stream,
                              processing_class=tokenizer)
        kept = list(trainer.train_dataset)
    assert len(kept) == 5
    assert "1 row(s) dropped so far" in caplog.text and "max_length=64" in caplog.text


@pytest.mark.parametrize("drops, reports", [(1, 1), (9, 1), (10, 2), (100, 3), (250, 3)])
def test_prompt_filter_reports_at_powers_of_ten(drops, reports, caplog):
    keep = PromptFitsFilter(max_length=4, name="train")
    with caplog.at_level(logging.WARNING):
        results = [keep({"prompt_ids": [0] * 9}) for _ in range(drops)] + [keep({"prompt_ids": [0, 1]})]
    assert results == [False] * drops + [True] and keep.dropped == drops
    assert caplog.text.count("dropped so far") == reports
