"""Logging set-up: one line per event, naming the plug or hook, with secrets masked.

Text a server sends often ends up in a log message; its control characters (line breaks,
ANSI escapes) are escaped, so that no message can forge or hide log lines. Secret values
are replaced with `***`: the configured secrets, and the values of `password=...`,
`token=...` or `"access_token": "..."` pairs; words are never touched, so a server saying
"Missing access token" is logged as it said it.

Two forms (`[logging] format`): "text", one line per event for people, and "json", one JSON
object per line for a log collector (journald, Loki, Elasticsearch). A log file can be opened
again at its path (`reopen`, what `chanmux run` does on SIGHUP) after logrotate renamed it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

_SECRET_WORD = re.compile(r"(?i)password|passwd|passphrase|token|secret|api_?key")
# password=hunter2, ?access_token=abc&..., token="abc"; never "token: Missing ..." (a sentence).
# Names are matched as whole words and then tested, which keeps the scan linear.
_PAIR = re.compile(r"(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]+)=(\"[^\"]*\"|'[^']*'|[^\s&\"',;)]+)")
# "password": "hunter2" and 'token': 'abc' (JSON and Python reprs)
_QUOTED = re.compile(r"([\"'])([A-Za-z0-9_.-]+)\1(\s*:\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


class SecretFilter(logging.Filter):
    """Replaces known secret values, and the values of secret-named pairs, with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _PAIR.sub(_pair, text)
        return _QUOTED.sub(_quoted, text)


def _pair(m: re.Match[str]) -> str:
    if not _SECRET_WORD.search(m.group(1)):
        return m.group(0)
    return f"{m.group(1)}={_masked(m.group(2))}"


def _quoted(m: re.Match[str]) -> str:
    if not _SECRET_WORD.search(m.group(2)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{_masked(m.group(4))}"


def _masked(value: str) -> str:
    if value[:1] in "\"'" and len(value) >= 2:
        return f"{value[0]}***{value[0]}"
    return "***"


def escape_controls(text: str) -> str:
    """`text` with control characters (except tab) written as escapes: `\\n`, `\\r`,
    `\\x1b`, `\\u2028`; what is left is one line."""

    def sub(match: re.Match[str]) -> str:
        char = match.group(0)
        if char == "\n":
            return "\\n"
        if char == "\r":
            return "\\r"
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(sub, text)


class LineFormatter(logging.Formatter):
    """One line per event: control characters in the message (and the logger name) are
    escaped; a traceback, when there is one, follows on its own lines with secrets masked."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None,
                 secrets: SecretFilter | None = None) -> None:
        super().__init__(fmt, datefmt)
        self.secrets = secrets or SecretFilter()

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: object) -> str:
        return self.secrets.clean(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return self.secrets.clean(super().formatStack(stack_info))


#: What `json.dumps(..., ensure_ascii=False)` leaves as it is but some readers take as a line
#: break or a terminal escape (DEL, C1 controls such as NEL, LINE and PARAGRAPH SEPARATOR).
_JSON_RAW = re.compile(r"[\x7f-\x9f\u2028\u2029]")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (ISO 8601 with the UTC offset), `level`, `logger`,
    `message`, and `traceback` / `stack` when there is one, secrets masked in them as in the
    text form. Every control character is written as a JSON escape, so an event is one line."""

    def __init__(self, secrets: SecretFilter | None = None) -> None:
        super().__init__()
        self.secrets = secrets or SecretFilter()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")

    def formatException(self, ei: Any) -> str:
        return self.secrets.clean(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self.secrets.clean(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, str] = {"time": self.formatTime(record), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["traceback"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(event, ensure_ascii=False)
        return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


class ReopenableFileHandler(logging.FileHandler):
    """A log file that can be opened again at its path, for rotation by renaming: after
    logrotate moved the file away, `reopen` creates a new one where the config says and the
    next lines go there."""

    def reopen(self) -> None:
        """Open the configured path again and close the old file. If the path cannot be
        opened (OSError), the old file stays in use, so no line is lost."""
        self.acquire()
        try:
            fresh = self._open()  # the configured path, mode and encoding
            old, self.stream = self.stream, fresh
            if old is not None:
                old.close()
        finally:
            self.release()


#: Formats `setup` takes, as `[logging] format` names them.
Format = Literal["text", "json"]


def setup(level: str = "INFO", levels: dict[str, str] | None = None, file: str | None = None,
          secrets: Iterable[str] = (), format: Format = "text") -> None:
    """Send every log event to `file` (appended to; reopened by `reopen`) or to standard
    error, at `level` (`levels`: loggers at a level of their own), as text lines or JSON
    lines (`format`), with `secrets` and secret-named values masked."""
    if format not in ("text", "json"):
        raise ValueError(f'format must be "text" or "json", got {format!r}')
    handler: logging.Handler = (ReopenableFileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler(sys.stderr))
    secret_filter = SecretFilter(secrets)
    if format == "json":
        handler.setFormatter(JsonFormatter(secrets=secret_filter))
    else:
        handler.setFormatter(LineFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                           "%Y-%m-%d %H:%M:%S", secrets=secret_filter))
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, ReopenableFileHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, lvl in (levels or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    psycopg = logging.getLogger("psycopg")
    if not any(isinstance(f, _AfterFailedWrite) for f in psycopg.filters):
        psycopg.addFilter(_AfterFailedWrite())


class _AfterFailedWrite(logging.Filter):
    """psycopg warns "error ignored terminating <psycopg.Pipeline ...>: pipeline aborted" when
    it closes a batch the database refused, at each retry: the store says that once already
    ("database ... cannot be written"), so these become DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.getMessage().endswith("pipeline aborted"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def reopen() -> list[str]:
    """Open the log file `setup` opened again at its path (after logrotate renamed it away);
    the paths reopened, none when logging goes to standard error. OSError when the path
    cannot be opened: the old file is still written to."""
    reopened = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.reopen()
            reopened.append(handler.baseFilename)
    return reopened
