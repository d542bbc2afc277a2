"""Logging set-up: one line per event, naming the plug or hook, with secrets masked.

Text a server sends often ends up in a log message; its control characters (line breaks,
ANSI escapes) are escaped, so that no message can forge or hide log lines. Secret values
are replaced with `***`: the configured secrets, and the values of `password=...`,
`token=...` or `"access_token": "..."` pairs; words are never touched, so a server saying
"Missing access token" is logged as it said it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

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


def setup(level: str = "INFO", levels: dict[str, str] | None = None, file: str | None = None,
          secrets: Iterable[str] = ()) -> None:
    handler: logging.Handler = (logging.FileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler(sys.stderr))
    secret_filter = SecretFilter(secrets)
    handler.setFormatter(LineFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                       "%Y-%m-%d %H:%M:%S", secrets=secret_filter))
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, lvl in (levels or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
