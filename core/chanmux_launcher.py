"""The `chanmux` command's first step, before anything heavy is imported.

`chanmux run` must never die of SIGHUP (logrotate and service managers send it to reopen the
log file). Importing chanmux and its dependencies takes about a second, during which SIGHUP
would still have its default action, killing the process; so the console script ignores it
here, in a module that imports nothing, and `chanmux.cli` installs the real handler (reopen
the log file) once it is loaded.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    if sys.argv[1:2] == ["run"] and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from chanmux.cli import main as run

    sys.exit(run())
