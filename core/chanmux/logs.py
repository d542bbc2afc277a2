"""Logging set-up: one line per event, naming the plug or hook, with secrets masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

_SECRET_KEYS = re.compile(r"(?i)(password|passwd|token|secret|access_token)(\"?\s*[=:]\s*\"?)([^\s\"&,]+)")


class SecretFilter(logging.Filter):
    """Replaces known secret values, and `token=...`-shaped pairs, with `***`."""

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
        return _SECRET_KEYS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def setup(level: str = "INFO", levels: dict[str, str] | None = None, file: str | None = None,
          secrets: Iterable[str] = ()) -> None:
    handler: logging.Handler = (logging.FileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, lvl in (levels or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
