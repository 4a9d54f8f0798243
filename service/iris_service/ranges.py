"""Clean the model's blocks so every range the client gets is valid.

The client rejects a whole answer for one bad range, so we clamp, drop, merge and
de-duplicate here: ranges are 1-based and inclusive, inside the file, not overlapping inside
a block, and no line belongs to two blocks (the first block to claim a line keeps it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_LABEL_CHARS = 80
MAX_DESCRIPTION_CHARS = 600

Range = tuple[int, int]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:  # "--3", "²": isdigit() alone lets such strings through
            return None
    return None


def _parse_range(raw: Any, line_count: int) -> Range | None:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        return None
    start, end = _as_int(raw[0]), _as_int(raw[1])
    if start is None or end is None:
        return None
    if start > end:
        start, end = end, start
    if end < 1 or start > line_count:
        return None
    return max(start, 1), min(end, line_count)


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sort, then merge overlapping and adjacent ranges."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _subtract(ranges: list[Range], claimed: list[Range]) -> list[Range]:
    """``ranges`` minus ``claimed``; both sorted and merged."""
    result: list[Range] = []
    for start, end in ranges:
        cursor = start
        for c_start, c_end in claimed:
            if c_end < cursor or c_start > end:
                continue
            if c_start > cursor:
                result.append((cursor, c_start - 1))
            cursor = max(cursor, c_end + 1)
            if cursor > end:
                break
        if cursor <= end:
            result.append((cursor, end))
    return result


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(value.split())[:limit]


def clean_blocks(raw_blocks: Any, line_count: int) -> list[dict[str, Any]]:
    """Return blocks with valid, disjoint ranges; blocks left without a line are dropped.

    Blocks with the same label (case-insensitive) are merged into the first one.
    """
    if line_count < 1 or not isinstance(raw_blocks, list):
        return []
    blocks: list[dict[str, Any]] = []
    by_label: dict[str, dict[str, Any]] = {}
    claimed: list[Range] = []
    for raw in raw_blocks:
        if not isinstance(raw, dict):
            continue
        label = _text(raw.get("label"), MAX_LABEL_CHARS)
        if not label:
            continue
        raw_ranges = raw.get("ranges")
        if not isinstance(raw_ranges, list):
            continue
        parsed = [_parse_range(r, line_count) for r in raw_ranges]
        ranges = _subtract(merge_ranges(r for r in parsed if r), claimed)
        if not ranges:
            continue
        claimed = merge_ranges(claimed + ranges)
        existing = by_label.get(label.casefold())
        if existing is not None:
            existing["ranges"] = merge_ranges(existing["ranges"] + ranges)
            continue
        block = {
            "label": label,
            "description": _text(raw.get("description"), MAX_DESCRIPTION_CHARS),
            "ranges": ranges,
        }
        by_label[label.casefold()] = block
        blocks.append(block)
    for block in blocks:
        block["ranges"] = [[start, end] for start, end in block["ranges"]]
    return blocks


def validate_blocks(blocks: list[dict[str, Any]], line_count: int) -> None:
    """Raise ValueError if ``blocks`` break the client's range contract (used by tests)."""
    seen: set[int] = set()
    for block in blocks:
        previous_end = 0
        for start, end in block["ranges"]:
            if not (isinstance(start, int) and isinstance(end, int)):
                raise ValueError(f"non-integer range {start!r}-{end!r}")
            if not 1 <= start <= end <= line_count:
                raise ValueError(f"range {start}-{end} outside 1..{line_count}")
            if start <= previous_end:
                raise ValueError(f"overlapping or unsorted range {start}-{end}")
            previous_end = end
            lines = set(range(start, end + 1))
            if lines & seen:
                raise ValueError(f"range {start}-{end} shares lines with another block")
            seen |= lines
