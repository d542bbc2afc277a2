"""The `chanmux` command: run, check, plugins, init."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

from . import __version__, hookspecs, logs
from . import config as config_mod
from .config import ConfigError, DatabaseConfig
from .errors import describe
from .host import Host
from .plug import Plug
from .plugins import LoadError, Registry, load_registry
from . import store as store_mod
from .store import DatabaseUnusable, check_database

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


class _StandIn(Plug):
    """Takes the place of a plug whose config has problems while the rest is checked."""


def _database_where(cfg: config_mod.Config) -> str:
    return "database.url" if cfg.database.url else "database"


def _file_problem(name: str) -> str | None:
    """Why a file (the log file) cannot be written, found without creating it."""
    path = Path(name)
    folder = path.parent
    if path.is_dir():
        return f"{path} is a folder"
    if not folder.is_dir():
        return f"folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    return store_mod.folder_problem(folder)


def load_checked(path: str, registry: Registry) -> tuple[config_mod.Config, Host]:
    """Read the config, build the host (not running) and check what can be checked offline,
    reporting every problem in one ConfigError: the file's keys, the database (URL, driver,
    SQLite file and folder), the log file, and the hooks' own checks (`on_load`), which run
    against what could be built even when other parts of the file have problems."""
    issues: list[tuple[str, str]] = []
    try:
        cfg = config_mod.load(path, registry)
    except ConfigError as exc:
        if exc.partial is None:
            raise
        cfg, issues = exc.partial, list(exc.issues)
    source = str(cfg.path) if cfg.path else path
    reported = {where for where, _ in issues}
    if not any(p == "database" or p.startswith("database.") for p in reported):
        problem = check_database(cfg.database_url())
        if problem:
            issues.append((_database_where(cfg), problem))
    if cfg.logging.file and "logging.file" not in reported:
        problem = _file_problem(cfg.logging.file)
        if problem:
            issues.append(("logging.file", f"cannot write the log file: {problem}"))
    partial = bool(issues)
    build_cfg, build_registry = cfg, registry
    if partial:  # the host is only built for the hooks' checks: touch no real database
        build_cfg = attrs.evolve(cfg, database=DatabaseConfig(url="sqlite://"))
        build_registry = attrs.evolve(
            registry, plug_types={**registry.plug_types, config_mod.STAND_IN: _StandIn})
    host = None
    try:
        host = Host(build_cfg, build_registry)
    except ConfigError as exc:
        broken = {where for where, _ in issues}
        for where, problem in exc.issues:
            if (where, problem) in issues:
                continue
            if problem.startswith("failed to load:") and where in broken:
                continue  # a hook built from a table with problems failed on them
            issues.append((where, problem))
    except LoadError:
        if not partial:
            raise
    except Exception as exc:  # noqa: BLE001 - a plug or hook refusing its config
        issues.append(("", f"could not set up the bridge: {describe(exc)}"))
    if issues or host is None:
        raise ConfigError(issues or [("", "could not set up the bridge")], source)
    return cfg, host


def _load(path: str, registry: Registry) -> tuple[config_mod.Config, Host]:
    return load_checked(path, registry)


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
    if path.is_dir():
        print(f"error: {path} is a folder; give the name of the file to write, "
              f"e.g. {path / 'chanmux.toml'}", file=sys.stderr)
        return 2
    if path.exists() and not args.force:
        print(f"error: {path} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    if not path.parent.is_dir():
        print(f"error: cannot write {path}: folder {path.parent} does not exist", file=sys.stderr)
        return 2
    try:
        path.write_text(STARTER.format(name=path.name), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
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


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _find(sub, kind)
            if found is not None:
                return found
    return None


def cmd_run(args: argparse.Namespace) -> int:
    if args.backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            print("error: --backend trio needs trio, which is not installed: pip install trio",
                  file=sys.stderr)
            return 2
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
    try:
        logs.setup(args.log_level or cfg.logging.level, cfg.logging.levels, cfg.logging.file,
                   secrets=_secrets(config_mod.expand_env(raw, os.environ)))
    except (OSError, ValueError) as exc:
        print(f"error: logging: {exc}", file=sys.stderr)
        return 2
    for error in registry.errors:
        log.warning("plugin not loaded: %s", error)
    log.info("chanmux %s starting: %d plugs, %d hooks", __version__, len(host.plugs), len(host.hooks))
    try:
        anyio.run(_run, host, backend=args.backend)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        unusable = _find(exc, DatabaseUnusable)
        if unusable is None:
            raise
        line = f"{_database_where(cfg)}: {unusable}"
        if cfg.logging.file:
            log.error("%s", line)
        print(f"error: {line}", file=sys.stderr)
        return 1
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
