"""Subcommands a plugin package adds to the `chanmux` command (the `chanmux_commands` spec).

A plugin that needs a command of its own (chanmux-matrix writes an application service's
registration file) returns `Command`s; `chanmux NAME ...` then runs it:

    @hookimpl
    def chanmux_commands():
        return [Command("matrix-registration", "write the homeserver's registration file",
                        run=write_registration, arguments=add_arguments)]

`arguments(parser)` adds the command's arguments to its argparse parser; `run(args)` does the
work and returns the exit status (0 done, 1 failed, 2 bad input, each said in one line on
stderr). A name core uses, or one two packages give, is refused with a warning naming both.

With `config=True` (since 0.2.3) the command takes the bridge's config file as its first
argument (`chanmux NAME FILE ...`): core reads it as `chanmux check` does its keys (types,
unknown keys, `${VARIABLES}`), prints every problem, one line each, and exits 2 when there
are any; otherwise `args.config` is the `chanmux.Config` and `args.file` its path. The plugs'
and hooks' own load checks (`on_load`) do not run: a command may make what they check for
(a registration file the plug reads).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import attrs


@attrs.frozen
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    config: bool = False
