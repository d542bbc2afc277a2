"""The `chanmux` command: run, check, plugins, init."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import __version__, hookspecs
from . import config as config_mod
from . import logs
from .config import ConfigError
from .host import Host
from .plugins import LoadError, Registry, load_registry

log = logging.getLogger("chanmux")

STARTER = """\
# chanmux config. Check it with `chanmux check {name}`, run it with `chanmux run {name}`.
# Every key is checked: a misspelt key or a wrong type is an error naming its line's path.
# Secrets can come from the environment: token = "${{MATRIX_TOKEN}}".

# Where chanmux remembers which copy of a message is where, resume points and queued messages.
# The default is a SQLite file beside this config; PostgreSQL for large set-ups:
# [database]
# url = "postgresql+psycopg://chanmux:secret@localhost/chanmux"

[logging]
level = "INFO"          # DEBUG, INFO, WARNING or ERROR

# One [plugs.NAME] table per network connection; `type` says which plug package runs it
# (`chanmux plugins` lists the installed types). This starter uses the in-memory test network.
[plugs.lobby]
type = "memory"
network = "Lobby"

[plugs.backroom]
type = "memory"
network = "Back room"

# Channels by name: the plug they are on and the network's own id for them.
[channels.lobby-general]
plug = "lobby"
source = "#general"

[channels.backroom-general]
plug = "backroom"
source = "#general"

# Hooks are features. With chanmux-sync installed, this links the two channels:
# [hooks.sync]
# type = "sync"
# [hooks.sync.channels]
# general = ["lobby-general", "backroom-general"]
"""


def _secrets(data: Any) -> Iterator[str]:
    """String values under keys that name secrets, for masking in logs."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and any(w in key.lower() for w in ("password", "token", "secret")):
                yield value
            else:
                yield from _secrets(value)
    elif isinstance(data, list):
        for value in data:
            yield from _secrets(value)


def _load(path: str, registry: Registry) -> tuple[config_mod.Config, Host]:
    cfg = config_mod.load(path, registry)
    return cfg, Host(cfg, registry)


def cmd_check(args: argparse.Namespace) -> int:
    registry = load_registry()
    try:
        _, host = _load(args.file, registry)
    except (ConfigError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, plug in host.plugs.items():
        for line in plug.check_warnings():
            print(f"warning: plugs.{name}: {line}", file=sys.stderr)
    print(f"{args.file}: OK ({len(host.plugs)} plugs, {len(host.channels)} channels, "
          f"{len(host.hooks)} hooks; database {host.store.describe()})")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = load_registry()
    print(f"chanmux {__version__}")
    specs = hookspecs.spec_functions()
    for dist in registry.distributions:
        if dist.error:
            print(f"\n{dist.name} {dist.version}  FAILED TO LOAD: {dist.error}")
            continue
        print(f"\n{dist.name} {dist.version}  ({dist.entry_point})")
        if dist.plug_types:
            print("  plug types: " + ", ".join(
                f"{n} ({c.__module__}.{c.__qualname__})" for n, c in sorted(dist.plug_types.items())))
        if dist.hook_types:
            print("  hook types: " + ", ".join(
                f"{n} ({c.__module__}.{c.__qualname__})" for n, c in sorted(dist.hook_types.items())))
        implemented = set(dist.specs)
        for cls in [*dist.plug_types.values(), *dist.hook_types.values()]:
            implemented |= {n for n in specs if n in vars(cls) or any(n in vars(b) for b in cls.__mro__[:-3])}
        async_specs = sorted(n for n in implemented if specs[n].chanmux_call != "register")
        reg_specs = sorted(n for n in implemented if specs[n].chanmux_call == "register")
        if reg_specs:
            print("  registers: " + ", ".join(reg_specs))
        if async_specs:
            print("  hook specs: " + ", ".join(async_specs))
    if not registry.distributions:
        print("\nno plugin packages installed")
    return 1 if registry.errors and args.strict else 0


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists() and not args.force:
        print(f"error: {path} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    path.write_text(STARTER.format(name=path.name), encoding="utf-8")
    print(f"wrote {path}; check it with `chanmux check {path}`")
    return 0


async def _run(host: Host) -> None:
    async with anyio.create_task_group() as tg:
        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for signum in received:
                    log.info("received %s; stopping", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(signals)
        await host.run()


def cmd_run(args: argparse.Namespace) -> int:
    registry = load_registry()
    try:
        raw = config_mod.tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, config_mod.tomllib.TOMLDecodeError, UnicodeDecodeError):
        raw = {}
    try:
        cfg, host = _load(args.file, registry)
    except (ConfigError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.setup(args.log_level or cfg.logging.level, cfg.logging.levels, cfg.logging.file,
               secrets=_secrets(config_mod.expand_env(raw, __import__("os").environ)))
    for error in registry.errors:
        log.warning("plugin not loaded: %s", error)
    log.info("chanmux %s starting: %d plugs, %d hooks", __version__, len(host.plugs), len(host.hooks))
    try:
        anyio.run(_run, host, backend=args.backend)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chanmux", description="Bridge chat networks.")
    parser.add_argument("--version", action="version", version=f"chanmux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the bridge described by a config file")
    p.add_argument("file")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("check", help="check a config file without connecting anywhere")
    p.add_argument("file")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("plugins", help="list installed plugin packages and what they provide")
    p.add_argument("--strict", action="store_true", help="exit 1 if a plugin failed to load")
    p.set_defaults(fn=cmd_plugins)
    p = sub.add_parser("init", help="write a commented starter config")
    p.add_argument("file", nargs="?", default="chanmux.toml")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_init)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
