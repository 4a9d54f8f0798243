"""Log line formats of the service's two files, made for merging them in time order.

Every record in the error log (gunicorn's own lines and the service's application lines) and
in the access log starts with the same timestamp: ISO 8601, UTC, milliseconds, fixed width
(``2025-01-31T09:08:07.123+00:00``), so lines from both files sort as plain strings and parse
with ``datetime.fromisoformat``. gunicorn's default stamps were ``[2025-01-31 09:08:07 +0100]``
(local time, no fraction) for errors and none at all for access lines.

Contract (copied into docs/design.md, "Log formats"; ``irisctl logs`` relies on it):

- error log:  ``<ts> [<pid>] [<LEVEL>] <message>``; lines that do not start with a timestamp
  continue the record above them (tracebacks).
- access log: ``<ts> <remote> "<request line>" <status> <bytes or -> <ms>ms "<user agent>"``,
  stamped when the response has been sent.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from gunicorn.glogging import Logger

TIMESTAMP_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00"
ERROR_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
ACCESS_FORMAT = "%(asctime)s %(message)s"
# gunicorn's access_log_format: the part of an access line after the timestamp.
ACCESS_MESSAGE_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

ERROR_LINE_RE = re.compile(
    rf"^(?P<ts>{TIMESTAMP_PATTERN}) \[(?P<pid>\d+)\] \[(?P<level>[A-Z]+)\] (?P<message>.*)$"
)
# gunicorn escapes a double quote inside the request line or user agent as \"
ACCESS_LINE_RE = re.compile(
    rf"^(?P<ts>{TIMESTAMP_PATTERN}) (?P<remote>\S+) "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-) (?P<ms>\d+)ms '
    r'"(?P<agent>(?:[^"\\]|\\.)*)"$'
)


class IsoTimestampFormatter(logging.Formatter):
    """``%(asctime)s`` as ISO 8601 in UTC with milliseconds: one width, sorts as text."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class IsoTimestampLogger(Logger):
    """gunicorn's logger with the formats above (``logger_class`` in gunicorn_conf)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        # Replace the formatters of the stream/file handlers gunicorn just made; syslog
        # handlers (not used by us) keep their own format.
        for log, fmt in ((self.error_log, ERROR_FORMAT), (self.access_log, ACCESS_FORMAT)):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False) and isinstance(
                    handler, logging.StreamHandler
                ):
                    handler.setFormatter(IsoTimestampFormatter(fmt))
