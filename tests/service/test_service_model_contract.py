"""The model contract: the schema we send, the prompt, and what we accept back."""

import hashlib
import json

import pytest
from iris_service.errors import ModelError
from iris_service.model_contract import (
    INSTRUCTIONS,
    PROMPT_VERSION,
    RESPONSE_FORMAT,
    RESPONSE_SCHEMA,
    AnalysisReply,
    ResponsibilityBlock,
    build_prompt,
    parse_reply,
)

# The fingerprint of what the model is asked, per prompt version. Cached analyses are keyed by
# PROMPT_VERSION: when this test fails, bump PROMPT_VERSION and pin the new fingerprint to it.
CONTRACT_FINGERPRINTS = {
    "2026-11-24.1": "944e6ec312446730f9dfecfd64fa8a9fc801727af5a36cce080da6c01ab118e5",
}


def reply(*blocks, intent="Parses things."):
    return json.dumps({"file_intent": intent, "responsibility_blocks": list(blocks)})


def objects_in(schema):
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield schema
        for value in schema.values():
            yield from objects_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from objects_in(value)


def test_changing_the_instructions_or_the_schema_needs_a_new_prompt_version():
    fingerprint = hashlib.sha256(json.dumps([INSTRUCTIONS, RESPONSE_SCHEMA]).encode())
    assert CONTRACT_FINGERPRINTS.get(PROMPT_VERSION) == fingerprint.hexdigest()


def test_the_schema_sent_is_derived_from_the_reply_models_in_strict_form():
    assert RESPONSE_FORMAT["format"]["strict"] is True
    assert RESPONSE_FORMAT["format"]["schema"] is RESPONSE_SCHEMA
    text = json.dumps(RESPONSE_SCHEMA)
    assert "$ref" not in text and '"title"' not in text
    objects = list(objects_in(RESPONSE_SCHEMA))
    assert len(objects) == 2
    for node in objects:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    assert list(RESPONSE_SCHEMA["properties"]) == list(AnalysisReply.model_fields)
    block = RESPONSE_SCHEMA["properties"]["responsibility_blocks"]["items"]
    assert list(block["properties"]) == list(ResponsibilityBlock.model_fields)


def test_prompt_names_the_language_and_numbers_each_line_once():
    prompt = build_prompt("import os\n\nx = 1\n", "python")
    assert prompt.startswith("Language: python\n")
    assert prompt.endswith("1 | import os\n2 | \n3 | x = 1")


def test_a_reply_that_follows_the_schema_is_typed():
    parsed = parse_reply(
        reply({"label": "Imports", "description": "Loads os.", "ranges": [[1, 2], [4, 4]]})
    )
    assert parsed.file_intent == "Parses things."
    assert parsed.responsibility_blocks == [
        ResponsibilityBlock(label="Imports", description="Loads os.", ranges=[[1, 2], [4, 4]])
    ]


def test_the_intent_is_one_line():
    assert parse_reply(reply(intent="  Parses\n  things. ")).file_intent == "Parses things."


def test_a_block_that_does_not_fit_is_dropped_not_the_answer():
    good = {"label": "Main", "description": "d", "ranges": [[1, 1]]}
    parsed = parse_reply(
        reply(
            "junk",
            None,
            {"label": 3, "description": "d", "ranges": [[1, 1]]},
            {"label": "No ranges", "description": "d"},
            {"label": "Ranges not a list", "description": "d", "ranges": "1-2"},
            good,
        )
    )
    assert [block.label for block in parsed.responsibility_blocks] == ["Main"]


def test_a_missing_or_non_text_description_is_empty_and_extra_keys_are_ignored():
    parsed = parse_reply(
        reply(
            {"label": "A", "ranges": [[1, 1]], "confidence": 0.9},
            {"label": "B", "description": None, "ranges": [[2, 2]]},
        )
    )
    assert [block.description for block in parsed.responsibility_blocks] == ["", ""]


@pytest.mark.parametrize("bad_range", [["1", "x"], [1.5, 2], [True, 2], "1-2", None, {"a": 1}])
def test_ranges_that_are_not_lists_of_line_numbers_are_dropped(bad_range):
    parsed = parse_reply(reply({"label": "A", "description": "", "ranges": [bad_range, [1, 1]]}))
    assert parsed.responsibility_blocks[0].ranges == [[1, 1]]


def test_numeric_strings_and_integral_floats_are_line_numbers():
    parsed = parse_reply(reply({"label": "A", "description": "", "ranges": [["2", 3.0]]}))
    assert parsed.responsibility_blocks[0].ranges == [[2, 3]]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Sure! {file_intent: oops", "not valid JSON"),
        (None, "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"file_intent": 1, "responsibility_blocks": []}', "missing file_intent"),
        ('{"file_intent": "x", "responsibility_blocks": {}}', "missing file_intent"),
        ('{"file_intent": "x"}', "missing file_intent"),
    ],
)
def test_an_unusable_reply_is_a_model_error(text, reason):
    with pytest.raises(ModelError, match=f"^Model answer unusable: {reason}"):
        parse_reply(text)
