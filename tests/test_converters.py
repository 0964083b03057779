"""Converters to point-wise rows, on hand-written rows with hand-computed expected outputs."""

import logging
from collections import Counter

import pytest
from datasets import Dataset

from trl_ulma.data import pairwise_to_pointwise, to_pointwise
from trl_ulma.formats import (
    alpaca_to_pairwise,
    convert_to_pointwise,
    detect_format,
    hh_to_pairwise,
    hh_to_pointwise,
    kto_to_pointwise,
    mix_demonstrations,
    ratings_to_scores,
    sharegpt_to_pairwise,
)


def user(content):
    return {"role": "user", "content": content}


def assistant(content):
    return {"role": "assistant", "content": content}


# ---------------------------------------------------------------------------------------------------------------
# pairwise_to_pointwise
# ---------------------------------------------------------------------------------------------------------------
def test_pairwise_explicit_prompt_keeps_extra_columns():
    pairs = {"prompt": ["2+2=", "Sky?"], "chosen": [" 4", " Blue"], "rejected": [" 5", " Green"], "id": [7, 8]}
    assert pairwise_to_pointwise(Dataset.from_dict(pairs)).to_list() == [
        {"prompt": "2+2=", "completion": " 4", "label": True, "id": 7},
        {"prompt": "Sky?", "completion": " Blue", "label": True, "id": 8},
        {"prompt": "2+2=", "completion": " 5", "label": False, "id": 7},
        {"prompt": "Sky?", "completion": " Green", "label": False, "id": 8},
    ]


def test_pairwise_implicit_prompt_standard_and_conversational():
    text = pairwise_to_pointwise(
        Dataset.from_dict({"chosen": ["The sky is blue."], "rejected": ["The sky is green."]})
    )
    assert text.to_list() == [
        {"prompt": "The sky is", "completion": " blue.", "label": True},
        {"prompt": "The sky is", "completion": " green.", "label": False},
    ]
    chat = {"chosen": [[user("Hi"), assistant("Hello!")]], "rejected": [[user("Hi"), assistant("Go away.")]]}
    assert pairwise_to_pointwise(Dataset.from_dict(chat)).to_list() == [
        {"prompt": [user("Hi")], "completion": [assistant("Hello!")], "label": True},
        {"prompt": [user("Hi")], "completion": [assistant("Go away.")], "label": False},
    ]


@pytest.mark.parametrize(
    "pairs, pattern",
    [
        ({"prompt": ["a"], "chosen": ["b"]}, r"need `chosen` and `rejected` columns"),
        ({"chosen": ["b"], "rejected": ["c"], "score": [1.0]}, r"paired columns .* and a `score` column"),
        ({"prompt": ["a", "a"], "chosen": ["b", "b"], "rejected": ["c", " "]}, r"Row 1, column `rejected`"),
        (
            {"chosen": ["Say ok", "Same text"], "rejected": ["Say no", "Same text, longer"]},
            r"Row 1, column `chosen`: .* one is a prefix of the other",
        ),
        ({"chosen": [[user("Hi"), assistant("Yo")]], "rejected": [[user("Hi"), assistant("Yo")]]}, r"identical"),
    ],
)
def test_pairwise_bad_input(pairs, pattern):
    with pytest.raises(ValueError, match=pattern):
        pairwise_to_pointwise(Dataset.from_dict(pairs))


# ---------------------------------------------------------------------------------------------------------------
# Anthropic HH
# ---------------------------------------------------------------------------------------------------------------
HH_SINGLE = {
    "chosen": "\n\nHuman: How do I boil an egg?\n\nAssistant: Simmer it for 9 minutes.",
    "rejected": "\n\nHuman: How do I boil an egg?\n\nAssistant: No idea.",
}
HH_MULTI = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant:  Why did the egg cross the road?",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: You are the joke.",
}
HH_MULTI_PROMPT = [user("Hi"), assistant("Hello!"), user("Tell me a joke.")]


def test_hh_to_pairwise_splits_at_the_last_assistant_turn():
    out = hh_to_pairwise(Dataset.from_list([HH_SINGLE, HH_MULTI]))
    assert out.to_list() == [
        {
            "prompt": [user("How do I boil an egg?")],
            "chosen": [assistant("Simmer it for 9 minutes.")],
            "rejected": [assistant("No idea.")],
        },
        {
            "prompt": HH_MULTI_PROMPT,
            "chosen": [assistant("Why did the egg cross the road?")],
            "rejected": [assistant("You are the joke.")],
        },
    ]


def test_hh_to_pointwise_labels_chosen_true_rejected_false():
    out = hh_to_pointwise(Dataset.from_list([HH_MULTI]))
    assert out.to_list() == [
        {"prompt": HH_MULTI_PROMPT, "completion": [assistant("Why did the egg cross the road?")], "label": True},
        {"prompt": HH_MULTI_PROMPT, "completion": [assistant("You are the joke.")], "label": False},
    ]
    assert to_pointwise(out, "binary")["score"] == [1.0, 0.0]


def test_hh_repeated_speaker_markers_are_merged():
    row = {
        "chosen": "\n\nHuman: Joke?\n\nAssistant: One:\n\nAssistant: Knock knock.",
        "rejected": "\n\nHuman: Joke?\n\nHuman: Please?\n\nAssistant: No.",
    }
    with pytest.raises(ValueError, match=r"Row 0, column `rejected`: the dialogue .* differs .* from message 0 on"):
        hh_to_pairwise(Dataset.from_list([row]))
    row["rejected"] = "\n\nHuman: Joke?\n\nAssistant: No."
    assert hh_to_pairwise(Dataset.from_list([row]))[0] == {
        "prompt": [user("Joke?")],
        "chosen": [assistant("One:\n\nKnock knock.")],
        "rejected": [assistant("No.")],
    }


@pytest.mark.parametrize(
    "column, text, pattern",
    [
        ("chosen", "How do I boil an egg? Simmer it.", r"Row 1, column `chosen`: not an HH transcript"),
        (
            "rejected",
            "\n\nHuman: How do I boil an egg?",
            r"Row 1, column `rejected`: the transcript does not end with",
        ),
        ("rejected", "\n\nAssistant: Hello.", r"Row 1, column `rejected`: the transcript does not end with"),
        ("chosen", "\n\nHuman: How do I boil an egg?\n\nAssistant:  ", r"Row 1, column `chosen`: the last assistant"),
        ("rejected", "\n\nHuman: How do I fry an egg?\n\nAssistant: No.", r"Row 1, column `rejected`: the dialogue"),
    ],
)
def test_hh_bad_rows_raise_or_are_dropped(column, text, pattern, caplog):
    rows = [HH_MULTI, {**HH_SINGLE, column: text}, HH_SINGLE]
    with pytest.raises(ValueError, match=pattern):
        hh_to_pointwise(Dataset.from_list(rows))
    with caplog.at_level(logging.WARNING, logger="trl_ulma.data"):
        kept = hh_to_pairwise(Dataset.from_list(rows), drop_invalid=True)
    assert [row["chosen"][0]["content"] for row in kept] == [
        "Why did the egg cross the road?",
        "Simmer it for 9 minutes.",
    ]
    assert "Dropped 1 of 3 rows of Anthropic HH transcripts: 1 x column" in caplog.text and "(rows 1)" in caplog.text


def test_hh_needs_transcript_columns():
    with pytest.raises(ValueError, match=r"Anthropic HH transcripts need the columns \('chosen', 'rejected'\)"):
        hh_to_pointwise(Dataset.from_dict({"text": ["\n\nHuman: hi\n\nAssistant: hello"]}))


def test_hh_refuses_rows_that_are_already_messages():
    chat = {"chosen": [[user("Hi"), assistant("Hello")]], "rejected": [[user("Hi"), assistant("No")]]}
    with pytest.raises(
        ValueError,
        match=r"Row 0, column `chosen`: expected a raw HH transcript string, got list. .*"
        r"use `pairwise_to_pointwise`",
    ):
        hh_to_pointwise(Dataset.from_dict(chat))


# ---------------------------------------------------------------------------------------------------------------
# ratings_to_scores
# ---------------------------------------------------------------------------------------------------------------
def stars(values, column="stars"):
    return Dataset.from_dict({"prompt": ["p"] * len(values), "completion": ["c"] * len(values), column: values})


def test_ratings_map_linearly_best_end_to_one():
    out = ratings_to_scores(stars([1, 2, 3, 4, 5]), "stars", scale=(1, 5))
    assert out["score"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert out.column_names == ["prompt", "completion", "score"]
    out = ratings_to_scores(stars([1, 2, 3, 4, 5]), "stars", scale=(1, 5), positive_at=4)
    assert out["score"] == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_ratings_lower_is_better():
    harm = stars([0, 1, 2.5, 4], column="harm")
    assert ratings_to_scores(harm, "harm", scale=(0, 4), higher_is_better=False)["score"] == [1.0, 0.75, 0.375, 0.0]
    out = ratings_to_scores(harm, "harm", scale=(0, 4), higher_is_better=False, positive_at=1)
    assert out["score"] == [1.0, 1.0, 0.375, 0.0]


def test_ratings_in_a_label_column_and_custom_score_column():
    assert ratings_to_scores(stars([1, 3], column="label"), "label", scale=(1, 3)).to_list() == [
        {"prompt": "p", "completion": "c", "score": 0.0},
        {"prompt": "p", "completion": "c", "score": 1.0},
    ]
    assert ratings_to_scores(stars([2, 3]), "stars", scale=(1, 3), score_column="stars")["stars"] == [0.5, 1.0]
    assert ratings_to_scores(stars([2, 3]), "stars", scale=(1, 3), score_column="s01")["s01"] == [0.5, 1.0]


@pytest.mark.parametrize("values", [[1, 5, 6], [1, 5, 0.5], [1, 5, float("nan")], [1, 5, float("inf")], [1, 5, None]])
def test_ratings_outside_the_scale_raise_with_the_row(values):
    with pytest.raises(ValueError, match=r"Row 2, column `stars`: the rating .* inside the scale \(1, 5\)"):
        ratings_to_scores(stars(values), "stars", scale=(1, 5))


def test_ratings_as_strings_raise():
    with pytest.raises(ValueError, match=r"Row 0, column `stars`: the rating '1' is not a number"):
        ratings_to_scores(stars(["1", "5"]), "stars", scale=(1, 5))


@pytest.mark.parametrize(
    "dataset, kwargs, pattern",
    [
        (stars([1]), {"rating_column": "rating", "scale": (1, 5)}, r"No rating column `rating`"),
        (stars([1]), {"rating_column": "stars", "scale": (5, 1)}, r"`scale` must be \(low, high\)"),
        (stars([1]), {"rating_column": "stars", "scale": (1, float("inf"))}, r"`scale` must be"),
        (stars([1]), {"rating_column": "stars", "scale": (1, 5), "positive_at": 6}, r"`positive_at` must be"),
        (stars([1]).add_column("score", [0.3]), {"rating_column": "stars", "scale": (1, 5)}, r"already has a `score`"),
        (stars([1]).add_column("label", [True]), {"rating_column": "stars", "scale": (1, 5)}, r"has a `label` column"),
    ],
)
def test_ratings_bad_arguments(dataset, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ratings_to_scores(dataset, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# kto_to_pointwise
# ---------------------------------------------------------------------------------------------------------------
def test_kto_role_content_rows():
    rows = [
        {"messages": [user("Hi"), assistant("Hello!"), user("2+2?"), assistant("4")], "label": True, "id": 0},
        {"messages": [user("Hi"), assistant("Get lost.")], "label": False, "id": 1},
    ]
    assert kto_to_pointwise(Dataset.from_list(rows)).to_list() == [
        {
            "label": True,
            "id": 0,
            "prompt": [user("Hi"), assistant("Hello!"), user("2+2?")],
            "completion": [assistant("4")],
        },
        {"label": False, "id": 1, "prompt": [user("Hi")], "completion": [assistant("Get lost.")]},
    ]


def test_kto_sharegpt_rows_with_kto_tag():
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello!"},
            ],
            "kto_tag": 1,
        },
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Meh."}], "kto_tag": 0},
    ]
    assert kto_to_pointwise(Dataset.from_list(rows)).to_list() == [
        {
            "prompt": [{"role": "system", "content": "Be brief."}, user("Hi")],
            "completion": [assistant("Hello!")],
            "label": True,
        },
        {"prompt": [user("Hi")], "completion": [assistant("Meh.")], "label": False},
    ]


@pytest.mark.parametrize(
    "rows, pattern",
    [
        (
            [{"messages": [user("Hi"), assistant("Hey")], "label": True}, {"messages": [user("Hi")], "label": False}],
            r"Row 1, column `messages`: the last message is the user's",
        ),
        ([{"messages": [assistant("Hey")], "label": True}], r"Row 0, column `messages`: there is no prompt"),
        (
            [{"messages": [user("Hi"), assistant(" ")], "label": True}],
            r"Row 0, column `messages`: the assistant reply is empty",
        ),
        (
            [{"messages": [{"role": "tool", "content": "x"}, assistant("Hey")], "label": True}],
            r"Row 0, .*unsupported message",
        ),
        ([{"messages": [user("Hi"), assistant("Hey")], "kto_tag": 2}], r"Row 0, column `kto_tag`: labels must be"),
        ([{"messages": [user("Hi"), assistant("Hey")], "kto_tag": True, "label": True}], r"exactly one of a `label`"),
        ([{"text": "Hi", "label": True}], r"need a `messages` \(or ShareGPT `conversations`\) column"),
    ],
)
def test_kto_bad_rows(rows, pattern):
    with pytest.raises(ValueError, match=pattern):
        kto_to_pointwise(Dataset.from_list(rows))


# ---------------------------------------------------------------------------------------------------------------
# LLaMA-Factory preference formats (the shapes of its dpo_en_demo.json, ShareGPT and Alpaca)
# ---------------------------------------------------------------------------------------------------------------
def system(content):
    return {"role": "system", "content": content}


SHAREGPT = [
    {
        "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}],
        "chosen": {"from": "gpt", "value": "Hello!"},
        "rejected": {"from": "gpt", "value": "Go away."},
    },
    {
        "conversations": [
            {"from": "human", "value": "2+2?"},
            {"from": "gpt", "value": "4"},
            {"from": "human", "value": "And 3+3?"},
        ],
        "chosen": {"from": "gpt", "value": "6"},
        "rejected": {"from": "gpt", "value": "7"},
    },
]


def test_sharegpt_preference_rows_become_conversational_pairs():
    dataset = Dataset.from_list(SHAREGPT)
    assert detect_format(dataset) == "sharegpt"
    assert sharegpt_to_pairwise(dataset).to_list() == [
        {
            "prompt": [system("Be brief."), user("Hi")],
            "chosen": [assistant("Hello!")],
            "rejected": [assistant("Go away.")],
        },
        {
            "prompt": [user("2+2?"), assistant("4"), user("And 3+3?")],
            "chosen": [assistant("6")],
            "rejected": [assistant("7")],
        },
    ]
    assert convert_to_pointwise(dataset)["label"] == [True, True, False, False]


def test_alpaca_preference_rows_become_conversational_pairs():
    rows = [
        {"instruction": "Translate", "input": "chat", "chosen": "cat", "rejected": "dog", "system": "", "history": []},
        {"instruction": "And this?", "input": "", "chosen": "dog", "rejected": "cat", "system": "Be exact.",
         "history": [["Translate chat", "cat"]]},
    ]
    dataset = Dataset.from_list(rows)
    assert detect_format(dataset) == "alpaca"
    assert alpaca_to_pairwise(dataset).to_list() == [
        {"prompt": [user("Translate\nchat")], "chosen": [assistant("cat")], "rejected": [assistant("dog")]},
        {
            "prompt": [system("Be exact."), user("Translate chat"), assistant("cat"), user("And this?")],
            "chosen": [assistant("dog")],
            "rejected": [assistant("cat")],
        },
    ]
    assert len(convert_to_pointwise(dataset)) == 4


@pytest.mark.parametrize(
    "row, pattern",
    [
        (SHAREGPT[0] | {"chosen": "Hello!"}, r"ShareGPT preference rows .*: Row 0, column `chosen`: expected one"),
        (SHAREGPT[0] | {"rejected": {"from": "human", "value": "?"}}, r"Row 0, column `rejected`: the reply is the"),
        (SHAREGPT[1] | {"conversations": SHAREGPT[1]["conversations"][:2]}, r"ends with the assistant's message"),
        (SHAREGPT[0] | {"conversations": [{"from": "robot", "value": "Hi"}]}, r"Row 0, column `conversations`: unsup"),
        (SHAREGPT[0] | {"rejected": {"from": "gpt", "value": "Hello!"}}, r"`chosen` and `rejected` are the same"),
        ({"instruction": "Say hi", "input": "", "chosen": "Hi!", "rejected": None},
         r"Alpaca preference rows .*: Row 0, column `rejected`: expected a string"),
        ({"instruction": "Say hi", "chosen": "Hi!", "rejected": "No", "history": [["only one"]]},
         r"Row 0, column `history`: turn 0 is not a \[user, assistant\] pair"),
    ],
)
def test_malformed_llamafactory_rows_name_the_format(row, pattern):
    with pytest.raises(ValueError, match=pattern):
        convert_to_pointwise(Dataset.from_list([row]))


# ---------------------------------------------------------------------------------------------------------------
# convert_to_pointwise(drop_invalid=True)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rows, kept, report",
    [
        (
            [{"prompt": "Q", "completion": c, "label": l} for c, l in [(" a", 1), (" ", 1), (" b", 2), (" c", 0),
                                                                      ("", 0)]],
            [" a", " c"],
            "Dropped 3 of 5 rows of point-wise rows (prompt, completion, label or score): 2 x column `completion`: the "
            "completion is empty (rows 1, 4); 1 x column `label`: labels must be True/False or 0/1, got 2 (rows 2).",
        ),
        (
            [{"prompt": "Q", "chosen": " a", "rejected": " b"}, {"prompt": "Q", "chosen": " a", "rejected": " a"}],
            [" a", " b"],
            "Dropped 1 of 2 rows of DPO pairs",
        ),
        (
            [{"messages": [user("Hi"), assistant("Yo")], "label": True}, {"messages": [user("Hi")], "label": False}],
            [[assistant("Yo")]],
            "1 x column `messages`: the last message is the user's, not the assistant's (rows 1)",
        ),
        (SHAREGPT + [SHAREGPT[0] | {"chosen": {"from": "gpt", "value": ""}}], None, "rows of LLaMA-Factory ShareGPT"),
    ],
)
def test_drop_invalid_drops_and_reports(rows, kept, report, caplog):
    with pytest.raises(ValueError, match=r"Row \d"):
        convert_to_pointwise(Dataset.from_list(rows))
    with caplog.at_level(logging.WARNING, logger="trl_ulma.data"):
        out = convert_to_pointwise(Dataset.from_list(rows), drop_invalid=True)
    assert report in caplog.text
    if kept is not None:
        assert out["completion"] == kept
    to_pointwise(out, "binary")  # what is left trains


def test_drop_invalid_refuses_to_drop_everything():
    with pytest.raises(ValueError, match=r"Every row of .* is invalid; the first: Row 0"):
        convert_to_pointwise(Dataset.from_list([{"prompt": "Q", "completion": " ", "label": 1}]), drop_invalid=True)


# ---------------------------------------------------------------------------------------------------------------
# mix_demonstrations
# ---------------------------------------------------------------------------------------------------------------
PREFERENCES = [
    {"prompt": [user("Hi")], "completion": [assistant("Hello!")], "label": True, "topic": "greet", "id": 0},
    {"prompt": [user("Hi")], "completion": [assistant("Go away.")], "label": False, "topic": "greet", "id": 1},
]


def demos(n):
    return [{"messages": [user(f"Q{i}"), assistant(f"A{i}")], "topic": f"t{i}", "source": "sft"} for i in range(n)]


def test_mix_uses_every_demonstration_once_and_drops_one_sided_columns():
    out = mix_demonstrations(Dataset.from_list(demos(2)), Dataset.from_list(PREFERENCES))
    assert out.to_list() == [
        {"prompt": [user("Q0")], "completion": [assistant("A0")], "label": True, "topic": "t0"},
        {"prompt": [user("Q1")], "completion": [assistant("A1")], "label": True, "topic": "t1"},
        *[{key: value for key, value in row.items() if key != "id"} for row in PREFERENCES],
    ]
    assert to_pointwise(out, "binary")["score"] == [1.0, 1.0, 1.0, 0.0]


def test_mix_standard_demonstrations_with_scores():
    demonstrations = Dataset.from_dict({"prompt": ["Q"], "completion": [" A"]})
    preferences = Dataset.from_dict({"prompt": ["P", "P"], "completion": [" good", " bad"], "score": [0.75, 0.0]})
    out = mix_demonstrations(demonstrations, preferences)
    assert out.to_list() == [
        {"prompt": "Q", "completion": " A", "score": 1.0},
        {"prompt": "P", "completion": " good", "score": 0.75},
        {"prompt": "P", "completion": " bad", "score": 0.0},
    ]
    assert out.features["score"].dtype == "float64"


def test_mix_ratio_subsamples_without_replacement_deterministically():
    preferences = Dataset.from_list(PREFERENCES * 2)  # 4 rows, ratio 0.5 -> 2 of the 5 demonstrations
    first = mix_demonstrations(Dataset.from_list(demos(5)), preferences, ratio=0.5, seed=3)
    demo_topics = first["topic"][:2]
    assert len(first) == 6 and len(set(demo_topics)) == 2 and first["label"][:2] == [True, True]
    assert mix_demonstrations(Dataset.from_list(demos(5)), preferences, ratio=0.5, seed=3)["topic"][:2] == demo_topics
    draws = {
        tuple(mix_demonstrations(Dataset.from_list(demos(5)), preferences, 0.5, seed)["topic"][:2])
        for seed in range(10)
    }
    assert len(draws) > 1  # the seed matters


def test_mix_ratio_repeats_demonstrations_when_it_needs_more():
    out = mix_demonstrations(Dataset.from_list(demos(3)), Dataset.from_list(PREFERENCES * 2), ratio=2.0)  # 8 demos
    counts = Counter(out["topic"][:8])
    assert out["topic"][8:] == ["greet"] * 4
    assert sorted(counts.values()) == [2, 3, 3] and set(counts) == {"t0", "t1", "t2"}


def test_mix_casts_demonstration_labels_to_the_preferences_dtype():
    preferences = Dataset.from_dict({"prompt": ["P", "P"], "completion": [" a", " b"], "label": [1, 0]})
    out = mix_demonstrations(Dataset.from_dict({"prompt": ["Q"], "completion": [" A"]}), preferences)
    assert out["label"] == [1, 1, 0] and out.features["label"].dtype == "int64"


@pytest.mark.parametrize(
    "demonstrations, preferences, ratio, pattern",
    [
        ([{"prompt": "Q", "completion": "A", "label": True}], None, None, r"demonstrations have a `label` column"),
        (
            demos(1),
            [{"prompt": [user("Hi")], "chosen": [assistant("a")], "rejected": [assistant("b")]}],
            None,
            r"`preferences` must be point-wise",
        ),
        ([{"prompt": "Q", "completion": "A"}], None, None, r"mix standard text and conversational rows"),
        ([{"messages": [user("Q")]}], None, None, r"In `demonstrations`: Row 0, column `messages`: the last message"),
        (
            [{"prompt": [user("Q")], "completion": [assistant("")]}],
            None,
            None,
            r"In `demonstrations`: Row 0, column `completion`: the completion is empty",
        ),
        ([{"text": "Q A"}], None, None, r"need a `messages`"),
        (demos(1), None, 0, r"`ratio` must be a positive number"),
        (demos(1), None, 0.1, r"selects no demonstration"),
    ],
)
def test_mix_bad_input(demonstrations, preferences, ratio, pattern):
    with pytest.raises(ValueError, match=pattern):
        mix_demonstrations(Dataset.from_list(demonstrations), Dataset.from_list(preferences or PREFERENCES), ratio)


def test_mix_scores_demonstrations_as_positives_under_the_threshold():
    demonstrations = Dataset.from_dict({"prompt": ["Q"], "completion": [" A"]})
    stars = Dataset.from_dict({"prompt": ["P", "P"], "completion": [" good", " bad"], "score": [5.0, 1.0]})
    with pytest.raises(ValueError, match=r"positive_threshold=4.0 > 1, a demonstration scored 1.0 would be a negative"):
        mix_demonstrations(demonstrations, stars, positive_threshold=4.0)
    with pytest.raises(ValueError, match=r"`demonstration_score=3.0` is below positive_threshold=4.0"):
        mix_demonstrations(demonstrations, stars, positive_threshold=4.0, demonstration_score=3.0)
    out = mix_demonstrations(demonstrations, stars, positive_threshold=4.0, demonstration_score=5.0)
    assert out["score"] == [5.0, 5.0, 1.0]


def test_mix_keeps_the_chat_template_columns():
    preferences = [row | {"tools": '[{"name": "f"}]'} for row in PREFERENCES]
    out = mix_demonstrations(Dataset.from_list(demos(1)), Dataset.from_list(preferences))
    assert out["tools"] == [None, '[{"name": "f"}]', '[{"name": "f"}]']
