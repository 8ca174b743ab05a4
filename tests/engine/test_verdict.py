"""Defensive verdict parsing: only a single readable verdict approves; everything else fails closed."""

import pytest

from chaperone.engine.verdict import critique_schema, decision_schema, parse_critique, parse_verdict

CATS = ["violence", "harassment", "needless_refusal"]


def test_plain_json_verdict():
    v = parse_verdict('{"decision": "revise", "categories": ["violence"], "critique": "No."}', CATS)
    assert v.decision == "revise" and v.categories == ["violence"] and v.critique == "No." and v.readable


def test_fenced_json_with_chatter_around_it():
    v = parse_verdict('Here you go:\n```json\n{"decision": "approve", "categories": [], "critique": ""}\n```', CATS)
    assert v.approved


@pytest.mark.parametrize(
    "word,expected", [("APPROVED", "approve"), ("accept", "approve"), ("reject", "revise"), ("Revise", "revise")]
)
def test_decision_words_are_normalised(word, expected):
    assert parse_verdict(f'{{"decision": "{word}"}}', CATS).decision == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "APPROVE",
        "approve",
        "yes it's fine",
        '{"verdict": "approve"}',
        '{"decision": "perhaps"}',
        '{"decision": "approve"',
        "[1, 2]",
    ],
)
def test_unreadable_outputs_are_not_approvals(raw):
    v = parse_verdict(raw, CATS)
    assert not v.approved and not v.readable and v.decision == "revise"


def test_conflicting_verdicts_are_unreadable():
    v = parse_verdict('{"decision": "approve"}\n{"decision": "revise", "categories": ["violence"]}', CATS)
    assert not v.approved and not v.readable


def test_unknown_categories_become_other_and_duplicates_collapse():
    v = parse_verdict('{"decision": "revise", "categories": ["violence", "aliens", "violence"]}', CATS)
    assert v.categories == ["violence", "other"]


def test_braces_inside_strings_do_not_confuse_the_parser():
    v = parse_verdict('{"decision": "revise", "categories": [], "critique": "remove the } and { bits"}', CATS)
    assert v.readable and v.critique == "remove the } and { bits"


def test_schemas_decision_alone_then_categories_from_the_policy():
    assert decision_schema()["properties"]["ok_to_send"]["enum"] == ["yes", "no"]
    assert critique_schema(CATS)["properties"]["categories"]["items"]["enum"] == CATS


def test_critique_parsing_maps_unknown_categories():
    cats, critique = parse_critique('{"categories": ["violence", "zzz"], "critique": "Remove it."}', CATS)
    assert cats == ["violence", "other"] and critique == "Remove it."
    assert parse_critique("not json at all", CATS) == ([], "not json at all")


@pytest.mark.parametrize(
    "raw,expected",
    [
        ('{"ok_to_send": "yes"}', "approve"),
        ('{"ok_to_send": "no", "categories": ["violence"], "critique": "x"}', "revise"),
    ],
)
def test_ok_to_send_spelling(raw, expected):
    v = parse_verdict(raw, CATS)
    assert v.readable and v.decision == expected


@pytest.mark.parametrize("cats", ["5", "null", '{"a": 1}', "true"])
def test_odd_category_values_do_not_break_the_parser(cats):
    v = parse_verdict(f'{{"decision": "revise", "categories": {cats}}}', CATS)
    assert v.readable and v.decision == "revise" and v.categories in ([], ["other"])
    assert parse_critique(f'{{"critique": "x", "categories": {cats}}}', CATS)[1] == "x"
