import random

import pytest
from iris_service.ranges import clean_blocks, merge_ranges, validate_blocks


def block(label, *ranges, description="d"):
    return {"label": label, "description": description, "ranges": [list(r) for r in ranges]}


def test_valid_blocks_pass_through_unchanged():
    blocks = [block("Imports", (1, 3)), block("Main", (4, 10), (12, 12))]
    assert clean_blocks(blocks, 12) == blocks


def test_ranges_are_clamped_to_the_file():
    assert clean_blocks([block("A", (0, 5), (8, 99))], 10)[0]["ranges"] == [[1, 5], [8, 10]]


def test_ranges_entirely_outside_the_file_are_dropped():
    cleaned = clean_blocks([block("A", (1, 2), (11, 20), (-5, -1))], 10)
    assert cleaned[0]["ranges"] == [[1, 2]]


def test_reversed_ranges_are_swapped():
    assert clean_blocks([block("A", (5, 2))], 10)[0]["ranges"] == [[2, 5]]


def test_overlapping_and_adjacent_ranges_in_a_block_are_merged_and_sorted():
    cleaned = clean_blocks([block("A", (6, 8), (1, 3), (2, 4), (5, 5), (8, 8))], 10)
    assert cleaned[0]["ranges"] == [[1, 8]]


def test_duplicate_ranges_are_deduplicated():
    assert clean_blocks([block("A", (2, 3), (2, 3))], 10)[0]["ranges"] == [[2, 3]]


def test_a_line_belongs_to_the_first_block_that_claims_it():
    cleaned = clean_blocks([block("A", (3, 6)), block("B", (1, 10))], 10)
    assert cleaned[1]["ranges"] == [[1, 2], [7, 10]]


def test_blocks_left_without_lines_are_dropped():
    cleaned = clean_blocks([block("A", (1, 10)), block("B", (2, 3)), block("C", (40, 50))], 10)
    assert [b["label"] for b in cleaned] == ["A"]


def test_blocks_with_the_same_label_are_merged():
    cleaned = clean_blocks([block("Setup", (1, 2)), block("X", (3, 4)), block("setup", (5, 6))], 9)
    assert [b["label"] for b in cleaned] == ["Setup", "X"]
    assert cleaned[0]["ranges"] == [[1, 2], [5, 6]]


@pytest.mark.parametrize(
    "bad_range", [["1", "x"], [1.5, 2], [True, 2], [1], [1, 2, 3], "1-2", None, {"a": 1}]
)
def test_malformed_ranges_are_dropped(bad_range):
    cleaned = clean_blocks([{"label": "A", "description": "", "ranges": [bad_range, [1, 1]]}], 5)
    assert cleaned[0]["ranges"] == [[1, 1]]


def test_numeric_strings_and_integral_floats_are_accepted():
    cleaned = clean_blocks([{"label": "A", "description": "", "ranges": [["2", 3.0]]}], 5)
    assert cleaned[0]["ranges"] == [[2, 3]]


def test_blocks_without_label_or_not_objects_are_dropped():
    assert clean_blocks([block("  ", (1, 2)), "junk", None, {"ranges": [[1, 1]]}], 5) == []


def test_labels_and_descriptions_are_single_line_and_bounded():
    cleaned = clean_blocks([block("A\n  label" + "x" * 200, (1, 1), description=None)], 1)
    assert cleaned[0]["label"].startswith("A label")
    assert len(cleaned[0]["label"]) <= 80
    assert cleaned[0]["description"] == ""


def test_no_lines_means_no_blocks():
    assert clean_blocks([block("A", (1, 1))], 0) == []
    assert clean_blocks("not a list", 10) == []


def test_malformed_range_values_are_dropped_without_an_error():
    blocks = [
        {"label": "A", "description": "d", "ranges": [["--3", "4"], ["\u00b2", 5], [1, 2]]},
        {"label": "B", "description": "d", "ranges": 7},
        {"label": "C", "description": "d", "ranges": [["6", " 8 "]]},
    ]
    cleaned = clean_blocks(blocks, 10)
    assert [(b["label"], b["ranges"]) for b in cleaned] == [("A", [[1, 2]]), ("C", [[6, 8]])]


def test_merge_ranges():
    assert merge_ranges([(5, 6), (1, 2), (3, 3), (9, 9)]) == [(1, 3), (5, 6), (9, 9)]


def test_random_model_output_always_becomes_valid_ranges():
    rng = random.Random(7)
    for _ in range(500):
        lines = rng.randint(1, 60)
        raw = [
            {
                "label": rng.choice(["A", "B", "C", "a", ""]),
                "description": "d",
                "ranges": [
                    [rng.randint(-5, 70), rng.randint(-5, 70)] for _ in range(rng.randint(0, 5))
                ],
            }
            for _ in range(rng.randint(0, 6))
        ]
        validate_blocks(clean_blocks(raw, lines), lines)


def test_validate_blocks_rejects_what_the_client_rejects():
    with pytest.raises(ValueError):
        validate_blocks([block("A", (0, 1))], 5)
    with pytest.raises(ValueError):
        validate_blocks([block("A", (1, 3)), block("B", (3, 4))], 5)
    with pytest.raises(ValueError):
        validate_blocks([block("A", (3, 4), (1, 3))], 5)
