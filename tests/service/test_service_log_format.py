"""Log line formats: every record starts with a sortable ISO 8601 UTC timestamp."""

import logging
from datetime import datetime

from iris_service.log_format import (
    ACCESS_FORMAT,
    ACCESS_LINE_RE,
    ERROR_FORMAT,
    ERROR_LINE_RE,
    IsoTimestampFormatter,
)


def _record(message: str, created: float) -> logging.LogRecord:
    record = logging.LogRecord("iris_service.x", logging.WARNING, __file__, 1, message, (), None)
    record.created = created
    record.msecs = 0
    return record


def test_error_line_has_an_iso_utc_timestamp_with_milliseconds():
    line = IsoTimestampFormatter(ERROR_FORMAT).format(_record("disk full", 1_700_000_000.5))
    match = ERROR_LINE_RE.match(line)
    assert match, line
    assert match["ts"] == "2023-11-14T22:13:20.500+00:00"
    assert datetime.fromisoformat(match["ts"]).timestamp() == 1_700_000_000.5
    assert (match["level"], match["message"]) == ("WARNING", "disk full")


def test_access_line_parses_with_escaped_quotes():
    message = '127.0.0.1 "GET /a?q=\\"x\\" HTTP/1.1" 200 - 3ms "curl/8 \\"y\\""'
    line = IsoTimestampFormatter(ACCESS_FORMAT).format(_record(message, 1_700_000_000.25))
    match = ACCESS_LINE_RE.match(line)
    assert match, line
    assert (match["status"], match["bytes"], match["ms"]) == ("200", "-", "3")
    assert match["request"] == 'GET /a?q=\\"x\\" HTTP/1.1'


def test_timestamps_sort_as_text_in_time_order():
    formatter = IsoTimestampFormatter("%(asctime)s")
    times = [9.999, 10.0, 99.5, 1_000.0, 1_700_000_000.001]
    stamps = [formatter.format(_record("", t)) for t in times]
    assert sorted(stamps) == stamps and len({len(s) for s in stamps}) == 1
