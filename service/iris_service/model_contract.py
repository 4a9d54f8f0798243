"""What we ask the model and what we accept back; no transport here (that is ``agent``).

The reply's shape has one owner, the pydantic models below: ``RESPONSE_SCHEMA`` (the strict
JSON schema sent with every request) is derived from them, and ``parse_reply`` validates the
model's text against them. Parsing is deliberately more forgiving than the schema: a block or
a range that does not fit is dropped, not the whole answer, and ``ranges.clean_blocks`` then
makes what is left valid for the client.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from iris_service.errors import ModelError
from iris_service.source import number_lines

# Part of the cache key: change it whenever the instructions or the reply models change
# (tests/service/test_service_model_contract.py pins both to this version).
PROMPT_VERSION = "2026-11-24.1"

INSTRUCTIONS = """\
You help a developer who is opening a source file for the first time.
Describe the file in two parts.

file_intent: what the file is for, as one plain sentence of at most 20 words.

responsibility_blocks: the jobs the file does. Each block is a complete conceptual unit:
a whole function, class, or group of statements that serve one purpose; never half of one.
List the blocks in the order a newcomer should read them.
- label: a short noun phrase of two to five words, such as "Request validation".
- description: one or two sentences on what the block does and why it is there.
- ranges: [first, last] pairs of line numbers, both included, taken from the numbers
  printed before " | " on each line. Use several pairs when a block's parts are apart.
  A line belongs to at most one block.
A small file (under about 40 lines) gets one or two blocks; a large one rarely needs more
than eight. Do not quote the code back."""

UNUSABLE = "Model answer unusable"


def _not_a_bool(value: Any) -> Any:
    # JSON true is not line 1: pydantic's lax int would take it, the contract does not.
    if isinstance(value, bool):
        raise ValueError("a boolean is not a line number")
    return value


LineNumber = Annotated[int, BeforeValidator(_not_a_bool)]
_LINE_NUMBERS: TypeAdapter[list[LineNumber]] = TypeAdapter(list[LineNumber])

# Extra keys are ignored when parsing but forbidden in the schema the model must follow.
_STRICT_OBJECT = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})


class ResponsibilityBlock(BaseModel):
    model_config = _STRICT_OBJECT

    label: str
    description: str
    ranges: list[list[LineNumber]]

    @classmethod
    def tolerant(cls, raw: Any) -> ResponsibilityBlock | None:
        """The block in ``raw``, or None when it is beyond use (not an object, no label...).

        A missing or non-text description becomes "", and ranges that are not lists of line
        numbers are dropped; their geometry (pairs, inside the file) is ``clean_blocks``' job.
        """
        if not isinstance(raw, dict):
            return None
        fixed = dict(raw)
        if not isinstance(fixed.get("description"), str):
            fixed["description"] = ""
        ranges = fixed.get("ranges")
        if isinstance(ranges, list):
            fixed["ranges"] = [r for r in ranges if _fits(_LINE_NUMBERS, r)]
        try:
            return cls.model_validate(fixed)
        except ValidationError:
            return None


class AnalysisReply(BaseModel):
    model_config = _STRICT_OBJECT

    file_intent: str
    responsibility_blocks: list[ResponsibilityBlock]


def _fits(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form strict structured output takes: references
    inlined, no titles, every object closed and every property required."""
    generated = model.model_json_schema()
    definitions = generated.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
        node = {k: v for k, v in node.items() if k not in ("title", "$defs")}
        if node.get("type") != "object":
            # "type" first: the schema text sent stays byte-for-byte what it has always been.
            ordered = sorted(node.items(), key=lambda item: item[0] != "type")
            return {key: resolve(value) for key, value in ordered}
        properties = {name: resolve(value) for name, value in node["properties"].items()}
        return {
            "type": "object",
            "additionalProperties": False,
            "required": list(properties),
            "properties": properties,
        }

    return resolve(generated)


RESPONSE_SCHEMA: dict[str, Any] = _strict_schema(AnalysisReply)

# The Responses API ``text`` parameter: the reply must follow RESPONSE_SCHEMA exactly.
RESPONSE_FORMAT: dict[str, Any] = {
    "format": {
        "type": "json_schema",
        "name": "iris_analysis",
        "strict": True,
        "schema": RESPONSE_SCHEMA,
    }
}


def build_prompt(normalized_source: str, language: str) -> str:
    return f"Language: {language}\n\nSource, one numbered line each:\n" + number_lines(
        normalized_source
    )


def estimate_tokens(text: str) -> int:
    """Rough count (about four characters a token) for metrics before the call."""
    return (len(text) + 3) // 4


def parse_reply(text: Any) -> AnalysisReply:
    """The model's reply text as a typed answer; raises ModelError when it is unusable.

    ``text`` is whatever the transport found as the reply's text (a 200 that was not a
    Response object, e.g. a proxy's HTML page, arrives as None).
    """
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise ModelError(f"{UNUSABLE}: not valid JSON") from None
    if not isinstance(data, dict):
        raise ModelError(f"{UNUSABLE}: not a JSON object")
    intent, raw_blocks = data.get("file_intent"), data.get("responsibility_blocks")
    if not isinstance(intent, str) or not isinstance(raw_blocks, list):
        raise ModelError(f"{UNUSABLE}: missing file_intent or responsibility_blocks")
    blocks = [ResponsibilityBlock.tolerant(raw) for raw in raw_blocks]
    return AnalysisReply(
        file_intent=" ".join(intent.split()),
        responsibility_blocks=[block for block in blocks if block is not None],
    )
