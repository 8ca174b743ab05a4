"""Defensive verdict parsing: only a single readable verdict approves; everything else fails closed."""

import pytest

from chaperone.verdict import json_schema, parse_verdict

CATS = ["violence", "harassment", "needless_refusal"]


def test_plain_json_verdict():
    v = parse_verdict('{"decision": "revise", "categories": ["violence"], "critique": "No."}', CATS)
    assert v.decision == "revise" and v.categories == ["violence"] and v.critique == "No." and v.readable


def test_fenced_json_with_chatter_around_it():
    v = parse_verdict('Here you go:\n```json\n{"decision": "approve", "categories": [], "critique": ""}\n```', CATS)
    assert v.approved


@pytest.mark.parametrize("word,expected", [("APPROVED", "approve"), ("accept", "approve"), ("reject", "revise"),
                                           ("Revise", "revise")])
def test_decision_words_are_normalised(word, expected):
    assert parse_verdict(f'{{"decision": "{word}"}}', CATS).decision == expected


@pytest.mark.parametrize("raw", ["", "APPROVE", "approve", "yes it's fine", '{"verdict": "approve"}',
                                 '{"decision": "perhaps"}', '{"decision": "approve"', "[1, 2]"])
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


def test_schema_puts_the_decision_first_and_limits_categories():
    schema = json_schema(CATS)
    assert list(schema["anyOf"][1]["properties"])[0] == "ok_to_send"
    assert schema["anyOf"][1]["properties"]["categories"]["items"]["enum"] == CATS
    assert json_schema(CATS, conditional=False)["required"] == ["ok_to_send", "categories", "critique"]
