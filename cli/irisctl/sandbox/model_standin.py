"""A stand-in for the OpenAI Responses API, for the sandbox hosts and the tests.

It serves ``POST /v1/responses`` to the real ``openai`` SDK (``OPENAI_BASE_URL=http://H:P/v1``)
and answers with a proper Response object whose ``output_text`` is JSON for the IRIS analysis
schema, derived deterministically from the numbered source in the request ("<n> | code").

Behaviour is controllable globally with ``POST /_standin/config`` (JSON ``delay_s``, ``mode``)
and per request with a marker line in the source, e.g. ``# IRIS-STANDIN: delay=3 mode=garbage``
(also ``cached=N``: report N cached input tokens). Modes: ``ok``, ``error500``, ``error400``,
``bad_ranges`` (out-of-file, reversed, overlapping and duplicate ranges), ``garbage`` (not
JSON), ``incomplete`` (status "incomplete"). ``GET /_standin/stats`` returns ``{"calls": N}``
and ``calls_by_client`` (the calls from each address); ``POST /_standin/reset`` zeroes them.
A request without ``Authorization: Bearer ...`` gets 401.

Run: ``python -m irisctl.sandbox.model_standin --host 127.0.0.1 --port 8799 [--delay 2]``.
Stdlib only: the ops package has no web framework.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("ok", "error500", "error400", "bad_ranges", "garbage", "incomplete")
MARKER_RE = re.compile(r"IRIS-STANDIN:\s*([^\n]*)")
NUMBERED_RE = re.compile(r"^ *(\d+) \| ?(.*)$")
LANGUAGE_RE = re.compile(r"^Language: *(\S+)", re.MULTILINE)
DEFINITION_RE = re.compile(
    r"^(?:export\s+(?:default\s+)?)?(?:async\s+)?"
    r"(def|class|function\*?|interface|type|enum|const|let|var)\s+([A-Za-z_$][\w$]*)"
)
KIND_LABELS = {
    "def": "Function",
    "function": "Function",
    "function*": "Generator",
    "class": "Class",
    "interface": "Interface",
    "type": "Type",
    "enum": "Enum",
}
SMALL_FILE_LINES = 15
LISTEN_BACKLOG = 4096
MAX_BLOCKS = 8


@dataclass
class StandinState:
    delay_s: float = 0.0
    mode: str = "ok"
    calls: int = 0
    # Per calling address too: two test runs sharing the stand-in each count their own hosts.
    calls_by_client: dict[str, int] = field(default_factory=dict)
    last_request: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        """Forget every call so far."""
        with self.lock:
            self.calls = 0
            self.calls_by_client = {}
            self.last_request = None

    def configure(self, delay_s: float | None = None, mode: str | None = None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        with self.lock:
            if delay_s is not None:
                self.delay_s = float(delay_s)
            if mode is not None:
                self.mode = mode


def request_text(payload: dict[str, Any]) -> str:
    """All text the client sent: instructions plus every input message part."""
    parts = [payload.get("instructions") or ""]
    items = payload.get("input")
    if isinstance(items, str):
        parts.append(items)
    elif isinstance(items, list):
        for item in items:
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def markers(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in MARKER_RE.finditer(text):
        for token in match.group(1).split():
            name, _, value = token.partition("=")
            if value:
                found[name.strip().lower()] = value.strip()
    return found


def numbered_source(text: str) -> list[str]:
    """The source lines, in order, from the run of lines numbered 1, 2, 3, ..."""
    lines: list[str] = []
    for raw in text.split("\n"):
        match = NUMBERED_RE.match(raw)
        if match and int(match.group(1)) == len(lines) + 1:
            lines.append(match.group(2))
    return lines


def _trim(start: int, end: int, lines: list[str]) -> tuple[int, int]:
    while end > start and not lines[end - 1].strip():
        end -= 1
    return start, end


def derive_analysis(lines: list[str], language: str = "source") -> dict[str, Any]:
    """Blocks at top-level definitions (decorators stay with theirs), deterministic."""
    count = len(lines)
    if count == 0:
        return {"file_intent": "An empty file.", "responsibility_blocks": []}
    starts: list[tuple[int, str]] = []
    pending_decorator: int | None = None
    for number, line in enumerate(lines, start=1):
        if line[:1].isspace() or not line.strip():
            continue
        if line.startswith("@"):
            pending_decorator = pending_decorator or number
            continue
        match = DEFINITION_RE.match(line)
        if match:
            kind, name = match.groups()
            label = f"{KIND_LABELS.get(kind, 'Definition')} {name}"
            starts.append((pending_decorator or number, label))
        pending_decorator = None
    blocks: list[dict[str, Any]] = []
    if count < SMALL_FILE_LINES or not starts:
        blocks.append(
            {"label": "Module body", "description": "The whole file.", "ranges": [[1, count]]}
        )
    else:
        if starts[0][0] > 1:
            starts.insert(0, (1, "Module setup"))
        starts = starts[:MAX_BLOCKS]  # the last block runs to the end of the file
        for index, (start, label) in enumerate(starts):
            end = starts[index + 1][0] - 1 if index + 1 < len(starts) else count
            start, end = _trim(start, end, lines)
            blocks.append(
                {
                    "label": label,
                    "description": f"{label}, lines {start} to {end}.",
                    "ranges": [[start, end]],
                }
            )
    intent = f"A {count}-line {language} file with {len(blocks)} responsibility blocks."
    return {"file_intent": intent, "responsibility_blocks": blocks}


def spoil_ranges(analysis: dict[str, Any], count: int) -> dict[str, Any]:
    """Every kind of bad range a model can produce, around one valid core."""
    first = analysis["responsibility_blocks"][0]
    half = max(1, count // 2)
    blocks = [
        {
            "label": first["label"],
            "description": first["description"],
            "ranges": [[0, half], [count + 5, count + 9], [half, 1], [1, 2], [1, 2]],
        },
        {"label": "Overlapping block", "description": "Overlaps.", "ranges": [[1, count + 100]]},
        {"label": "Outside the file", "description": "Nowhere.", "ranges": [[-4, -1]]},
        {"label": first["label"], "description": "Duplicate label.", "ranges": [[count, count]]},
    ]
    return {"file_intent": analysis["file_intent"], "responsibility_blocks": blocks}


def response_object(
    model: str, text: str, input_tokens: int, cached: int, status: str = "completed"
) -> dict[str, Any]:
    output_tokens = (len(text) + 3) // 4
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "reasoning": {"effort": "minimal", "summary": None},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": min(cached, input_tokens)},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    server: _StandinServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: dict[str, Any] | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing to do

    def _json_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server.state
        if self.path == "/_standin/stats":
            with state.lock:
                stats = {
                    "calls": state.calls,
                    "calls_by_client": dict(state.calls_by_client),
                    "delay_s": state.delay_s,
                    "mode": state.mode,
                }
            self._send(200, stats)
        elif self.path == "/_standin/last":
            self._send(200, state.last_request or {})
        else:
            self._send(404, _error_body(f"no route {self.path}", "invalid_request_error"))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        try:
            payload = self._json_body()
        except ValueError:
            self._send(400, _error_body("body is not JSON", "invalid_request_error"))
            return
        if self.path == "/_standin/config":
            try:
                self.server.state.configure(payload.get("delay_s"), payload.get("mode"))
            except (ValueError, TypeError) as error:
                self._send(400, _error_body(str(error), "invalid_request_error"))
                return
            self._send(200, {"delay_s": self.server.state.delay_s, "mode": self.server.state.mode})
        elif self.path == "/_standin/reset":
            self.server.state.clear()
            self._send(200, {"calls": 0})
        elif self.path.rstrip("/") == "/v1/responses":
            self._responses(payload)
        else:
            self._send(404, _error_body(f"no route {self.path}", "invalid_request_error"))

    def _responses(self, payload: dict[str, Any]) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            self._send(401, _error_body("missing bearer token", "invalid_request_error"))
            return
        state = self.server.state
        with state.lock:
            state.calls += 1
            client = self.client_address[0]
            state.calls_by_client[client] = state.calls_by_client.get(client, 0) + 1
            state.last_request = payload
            delay_s, mode = state.delay_s, state.mode
        text = request_text(payload)
        wanted = markers(text)
        mode = wanted.get("mode", mode)
        try:
            delay_s = float(wanted.get("delay", delay_s))
            cached = int(wanted.get("cached", 0))
        except ValueError:
            delay_s, cached = delay_s, 0
        if delay_s > 0:
            time.sleep(delay_s)
        if mode == "error500":
            self._send(500, _error_body("stand-in server error", "server_error"))
            return
        if mode == "error400":
            self._send(400, _error_body("stand-in rejected the request", "invalid_request_error"))
            return
        lines = numbered_source(text)
        language_match = LANGUAGE_RE.search(text)
        analysis = derive_analysis(lines, language_match.group(1) if language_match else "source")
        if mode == "bad_ranges" and lines:
            analysis = spoil_ranges(analysis, len(lines))
        answer = json.dumps(analysis)
        status = "completed"
        if mode == "garbage":
            answer = "Sure! Here is the analysis you asked for: {file_intent: oops"
        elif mode == "incomplete":
            answer, status = answer[: len(answer) // 2], "incomplete"
        model = str(payload.get("model") or "gpt-5-nano-2025-08-07")
        self._send(200, response_object(model, answer, (len(text) + 3) // 4, cached, status))


class _StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of concurrent model calls (capacity
    # tests fire hundreds at once) overflowed it, and the kernel's SYN retries (1 s, 3 s, ...)
    # throttled the burst. The real API accepts them all at once.
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], state: StandinState, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.verbose = verbose

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"


@dataclass
class StandinHandle:
    """A stand-in running in a background thread (see :func:`start_standin`)."""

    server: _StandinServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        """What to give the SDK as OPENAI_BASE_URL."""
        return f"{self.url}/v1"

    def configure(self, delay_s: float | None = None, mode: str | None = None) -> None:
        self.server.state.configure(delay_s, mode)

    def calls(self) -> int:
        return self.server.state.calls

    def last_request(self) -> dict[str, Any] | None:
        return self.server.state.last_request

    def reset(self) -> None:
        self.server.state.clear()
        self.configure(delay_s=0.0, mode="ok")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_standin(
    host: str = "127.0.0.1",
    port: int = 0,
    delay_s: float = 0.0,
    mode: str = "ok",
    verbose: bool = False,
) -> StandinHandle:
    """Start a stand-in on ``host:port`` (0: any free port) in a daemon thread."""
    state = StandinState()
    state.configure(delay_s, mode)
    server = _StandinServer((host, port), state, verbose)
    thread = threading.Thread(target=server.serve_forever, name="model-standin", daemon=True)
    thread.start()
    return StandinHandle(server, thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI Responses API stand-in for IRIS")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per model call")
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    state = StandinState()
    state.configure(args.delay, args.mode)
    server = _StandinServer((args.host, args.port), state, args.verbose)
    print(f"model stand-in listening on {server.url}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
