from iris_service.cache_key import cache_key
from iris_service.source import (
    line_count,
    normalize_source,
    number_lines,
    split_lines,
    strip_client_numbering,
)

KEY_ARGS = {
    "language": "python",
    "model": "m",
    "reasoning_effort": "minimal",
    "prompt_version": "1",
}


def numbered(source: str) -> str:
    """The VS Code client's format: every line "<n> | <code>"."""
    return "\n".join(f"{n} | {line}" for n, line in enumerate(source.split("\n"), start=1))


def test_client_numbering_is_stripped():
    assert strip_client_numbering("1 | import os\n2 | \n3 | print(os)") == "import os\n\nprint(os)"


def test_numbering_of_empty_lines_without_trailing_space_is_stripped():
    assert strip_client_numbering("1 | a = 1\n2 |\n3 | b = 2") == "a = 1\n\nb = 2"


def test_right_aligned_numbers_are_stripped():
    source = "\n".join(f"{n:>2} | x{n}" for n in range(1, 12))
    assert strip_client_numbering(source).split("\n")[0] == "x1"


def test_trailing_newline_is_kept():
    assert strip_client_numbering("1 | a\n2 | b\n") == "a\nb\n"


def test_plain_source_is_unchanged():
    source = "def f():\n    return 1 | 2\n"
    assert strip_client_numbering(source) == source


def test_partially_numbered_source_is_unchanged():
    source = "1 | a\nb\n3 | c"
    assert strip_client_numbering(source) == source


def test_numbering_that_does_not_count_from_one_is_unchanged():
    for source in ("2 | a\n3 | b", "1 | a\n3 | b", "1 | a\n1 | b"):
        assert strip_client_numbering(source) == source


def test_code_that_looks_like_numbering_keeps_its_own_text():
    # A file whose real lines start with "n | " is numbered once by the client: only the
    # client's layer is removed.
    source = "1 | x\n2 | y"
    assert strip_client_numbering(numbered(source)) == source


def test_numbered_and_plain_copies_share_a_cache_key():
    plain = "import os\n\n\ndef main():\n    print(os.getcwd())\n"
    key_plain = cache_key(normalize_source(plain), **KEY_ARGS)
    key_numbered = cache_key(normalize_source(numbered(plain.rstrip("\n")) + "\n"), **KEY_ARGS)
    assert key_plain == key_numbered


def test_crlf_and_lf_copies_share_a_cache_key():
    assert normalize_source("a\r\nb\r\n") == normalize_source("a\nb\n")


def test_copies_differing_in_trailing_newlines_normalize_alike():
    forms = ["a\nb", "a\nb\n", "a\nb\n\n", "1 | a\n2 | b", "1 | a\n2 | b\n3 | "]
    assert {normalize_source(form) for form in forms} == {"a\nb\n"}


def test_cache_key_changes_with_everything_that_changes_the_answer():
    base = cache_key("x = 1\n", **KEY_ARGS)
    for name, value in [
        ("model", "other"),
        ("prompt_version", "2"),
        ("language", "javascript"),
        ("reasoning_effort", "low"),
    ]:
        assert cache_key("x = 1\n", **{**KEY_ARGS, name: value}) != base
    assert cache_key("x = 2\n", **KEY_ARGS) != base
    assert len(base) == 64


def test_model_sees_single_numbering():
    assert number_lines("a\n\nb\n") == "1 | a\n2 | \n3 | b"


def test_line_count_matches_editor_lines():
    assert line_count("") == 0
    assert line_count("a") == 1
    assert line_count("a\n") == 1
    assert line_count("a\n\n") == 2
    assert split_lines("a\nb") == ["a", "b"]
