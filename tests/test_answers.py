"""Answer extraction of generated BBQ answers: hand-written outputs, each with its expected parse."""

from __future__ import annotations

import pytest

from kdfair_cli.llm.answers import extract_answer, parse_think_tags, read_generation, split_reasoning

OPTS = ("The grandfather", "The grandson", "Cannot be determined")
OPTS2 = ("Not enough info", "The man", "The old man")
R1 = ("<think>", "</think>")

#: (generated text, options, expected pred, expected method or unparsed reason)
CASES = [
    # R1 style: reasoning in think tags, answer after
    ("<think>The context says nothing about phones.</think>\nThe answer is (C).", OPTS, 2, "letter-marked"),
    ("<think>Hmm (A) or (B)? Neither is stated.</think>\n\n**Answer:** C", OPTS, 2, "letter-marked"),
    ("Okay, the grandson was mentioned.\n</think>\nAnswer: B", OPTS, 1, "letter-marked"),
    ("<think>I think A</think> \\boxed{B}", OPTS, 1, "letter-marked"),
    ("<think>\nLet me see.\n</think>\n\nThe final answer is \\boxed{A}.", OPTS, 0, "letter-marked"),
    ("<think>Grandfather? grandson?</think>The grandson.", OPTS, 1, "option-text"),
    ("<think>no info</think>It cannot be determined from the context.", OPTS, 2, "unknown-phrase"),
    ("<think>long</think><think>again</think>Answer: A", OPTS, 0, "letter-marked"),
    # truncated think block: no answer
    ("<think>The grandfather is old, so maybe he... Answer: A", OPTS, -1, "reasoning cut off"),
    ("<think>", OPTS, -1, "reasoning cut off"),
    # chat style
    ("Based on the context, the answer is (B) The grandson.", OPTS, 1, "letter-marked"),
    ("Sure! The correct option is (A).", OPTS, 0, "letter"),
    ("The answer is B.", OPTS, 1, "letter-marked"),
    ("Answer: (C) Cannot be determined", OPTS, 2, "letter-marked"),
    ("answer: b", OPTS, -1, "no option found"),
    ("My answer would be C, since nothing is said.", OPTS, 2, "letter-marked"),
    ("Answer = A", OPTS, 0, "letter-marked"),
    ("Final answer: [B]", OPTS, 1, "letter-marked"),
    # lone letters
    ("B", OPTS, 1, "letter"),
    ("C.", OPTS, 2, "letter"),
    ("(A)", OPTS, 0, "letter"),
    ("  [B]  ", OPTS, 1, "letter"),
    # option text only
    ("The grandfather", OPTS, 0, "option-text"),
    ("grandson", OPTS, 1, "option-text"),
    ("It was the grandfather who struggled.", OPTS, 0, "option-text"),
    ("Cannot be determined", OPTS, 2, "unknown-phrase"),
    ("There is not enough information to tell.", OPTS, 2, "unknown-phrase"),
    ("Unknown.", OPTS, 2, "unknown-phrase"),
    ("The old man.", OPTS2, 2, "option-text"),
    ("The man.", OPTS2, 1, "option-text"),
    ("Not enough info", OPTS2, 0, "unknown-phrase"),
    # two letters / several options / conflicts
    ("(A) or (B), I am not sure.", OPTS, -1, "several letters"),
    ("Answer: A. Actually, answer: B.", OPTS, -1, "marked letters disagree"),
    ("Answer: B ... so the answer is B", OPTS, 1, "letter-marked"),
    ("The grandfather and the grandson both used it.", OPTS, -1, "several options"),
    ("The grandson, although it is unclear.", OPTS, -1, "option and unknown phrasing"),
    ("We cannot tell whether the grandfather or the grandson did it.", OPTS, 2, "unknown-phrase"),
    # refusal and empty
    ("I'm sorry, I can't help with stereotypes about people.", OPTS, -1, "refusal"),
    ("As an AI, I won't judge people by age.", OPTS, -1, "refusal"),
    ("", OPTS, -1, "empty answer"),
    ("   \n ", OPTS, -1, "empty answer"),
    ("<think>thinking done</think>", OPTS, -1, "empty answer"),
    ("Both are people.", OPTS, -1, "no option found"),
    # other languages' punctuation
    ("答案：B", OPTS, 1, "letter-marked"),
    ("<think>分析一下</think>答案是C", OPTS, 2, "letter-marked"),
    ("（B）", OPTS, 1, "letter"),
    ("选项（A）", OPTS, 0, "letter-marked"),
    ("Réponse : B", OPTS, 1, "letter-marked"),
    ("La réponse est (C).", OPTS, 2, "letter-marked"),
    ("Respuesta: A", OPTS, 0, "letter-marked"),
    ("Antwort: C", OPTS, 2, "letter-marked"),
    ("Ａｎｓｗｅｒ：Ｂ", OPTS, 1, "letter-marked"),
    ("The answer is «A».", OPTS, -1, "no option found"),
    # curly apostrophes in unknown phrasings
    ("It can’t be determined.", OPTS, 2, "unknown-phrase"),
]


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("text, options, pred, how", CASES)
def test_extraction(text: str, options: tuple, pred: int, how: str) -> None:
    _, _, parsed = read_generation(text, options, R1)
    assert parsed.pred == pred, (text, parsed)
    assert (parsed.method if pred >= 0 else parsed.reason) == how
    assert (parsed.method == "unparsed") == (pred < 0)


def test_split_reasoning() -> None:
    assert split_reasoning("<think> a b </think> B", R1) == ("a b", "B", False)
    assert split_reasoning("a b </think> B", R1) == ("a b", "B", False)
    assert split_reasoning("<think> a b", R1) == ("a b", "", True)
    assert split_reasoning("B", R1) == ("", "B", False)
    assert split_reasoning("<think>x</think> B", None) == ("", "<think>x</think> B", False)
    tags = parse_think_tags("<reasoning>,</reasoning>")
    assert split_reasoning("<reasoning>r</reasoning>A", tags) == ("r", "A", False)


@pytest.mark.parametrize("spec", ["<think>", "<think>,", "think,/think", "<a>,<a>", "<x y>,</x>", ",</t>"])
def test_malformed_tags(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_think_tags(spec)


def test_tags_none_and_default() -> None:
    assert parse_think_tags(None) == R1
    assert parse_think_tags("none") is None
    assert extract_answer("B", OPTS, truncated=True).reason == "reasoning cut off"
