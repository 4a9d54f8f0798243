"""Source normalization: undo the client's line numbering, number lines for the model."""

from __future__ import annotations

import re

# The VS Code client sends every line as "<n> | <code>"; an empty line may lose its trailing
# space. Numbering counts only when every line carries it, in order from 1.
_CLIENT_NUMBER_RE = re.compile(r"^ *(\d+) \|(?: |$)")
NUMBER_SEPARATOR = " | "


def split_lines(source: str) -> list[str]:
    """Lines as the editor counts them: "\\n" separated, a final newline ends the last line."""
    if not source:
        return []
    lines = source.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def strip_client_numbering(source: str) -> str:
    """Return the source without the client's "<n> | " prefixes, or unchanged if unnumbered."""
    lines = split_lines(source)
    if not lines:
        return source
    stripped = []
    for expected, line in enumerate(lines, start=1):
        match = _CLIENT_NUMBER_RE.match(line)
        if match is None or int(match.group(1)) != expected:
            return source
        stripped.append(line[match.end() :])
    return "\n".join(stripped) + ("\n" if source.endswith("\n") else "")


def normalize_source(source: str) -> str:
    """The one form of a file that is prompted, counted and hashed.

    CRLF becomes LF, the client's numbering goes, and the end is exactly one newline: copies
    that differ only in trailing newlines (the client numbers a final empty line) are equal.
    """
    text = strip_client_numbering(source.replace("\r\n", "\n")).rstrip("\n")
    return text + "\n" if text else ""


def number_lines(source: str) -> str:
    """Number each line once, "<n> | <code>", so the model can cite ranges."""
    return "\n".join(
        f"{n}{NUMBER_SEPARATOR}{line}" for n, line in enumerate(split_lines(source), start=1)
    )


def line_count(source: str) -> int:
    return len(split_lines(source))
