"""The `chanmux` command: run, check, plugins, init (also `python -m chanmux`)."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

from . import config as config_mod
from . import hookspecs, logs
from . import store as store_mod
from ._version import __version__
from .config import ConfigError, DatabaseConfig
from .errors import describe
from .host import Host
from .plug import Plug
from .registry import (
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    KNOWN_TYPES,
    LoadError,
    Registry,
    disabled_by_env,
    load_registry,
)
from .service import Notifier
from .store import DatabaseUnusable, check_database, sqlite_file

log = logging.getLogger("chanmux")

STARTER_HEAD = """\
# chanmux config. Check it with `chanmux check {name}`, run it with `chanmux run {name}`.
# Every key is checked: a misspelt key or a wrong type is an error naming its line's path.
# Secrets can come from the environment: token = "${{MATRIX_TOKEN}}".
# Written by `chanmux init` for the plugin packages installed: {installed}.

# Where chanmux remembers which copy of a message is where, resume points and queued messages.
# The default is a SQLite file beside this config; PostgreSQL for large set-ups:
# [database]
# url = "postgresql+psycopg://chanmux:secret@localhost/chanmux"

[logging]
level = "INFO"          # DEBUG, INFO, WARNING or ERROR

# One [plugs.NAME] table per network connection; `type` says which plug package runs it
# (`chanmux plugins` lists the installed types), [channels.NAME] the channels on it, and
# [hooks.NAME] the features that link them.
"""

MEMORY_STARTER = """\
# No network plug package (chanmux-irc, chanmux-matrix) is installed, so this starter uses
# the test kit's in-memory network, to try chanmux out: `pip install chanmux-irc
# chanmux-matrix` and run `chanmux init` again for a real bridge.
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
"""

#: What each first-party package adds, for the starter's list of what else could be installed.
PACKAGES = {"chanmux-irc": "IRC networks", "chanmux-matrix": "Matrix rooms",
            "chanmux-sync": "joins channels into one conversation",
            "chanmux-forward": "one-way copies, e.g. announcements"}


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
    if host is not None and not partial and sqlite_file(cfg.database_url()) is not None:
        # A SQLite file is read (never changed) to see whether the installed packages can
        # use it; `check` connects to no database server, so PostgreSQL is checked by `run`.
        problem = host.check_schema()
        if problem:
            issues.append((_database_where(cfg), problem))
    if issues or host is None:
        raise ConfigError(issues or [("", "could not set up the bridge")], source)
    return cfg, host


def _load(path: str, registry: Registry) -> tuple[config_mod.Config, Host]:
    return load_checked(path, registry)


def _registry(path: str | None = None) -> Registry:
    """The installed plugins, without those the environment or the config file disables."""
    if path is None:
        return load_registry()
    return load_registry(disable=config_mod.disabled_in(path), source=f"plugins.disable in {path}")


def _env_names_unknown(registry: Registry) -> list[str]:
    return [f"{DISABLE_ENV} names {name!r}, which is not an installed plugin package"
            for name in disabled_by_env() if registry.find(name) is None]


def _load_problems(registry: Registry, said: str = "") -> list[str]:
    """A line for each plugin that failed to load and a misspelt disabled name, except those
    `said` (an error already printed) names."""
    lines = [f"plugin {d.name} {'was refused' if d.refused else 'not loaded'}: {d.error}"
             for d in registry.distributions if d.error and d.name not in said]
    return lines + _env_names_unknown(registry)


def cmd_check(args: argparse.Namespace) -> int:
    registry = _registry(args.file)
    try:
        _, host = _load(args.file, registry)
    except (ConfigError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for line in _load_problems(registry, str(exc)):
            print(f"warning: {line}", file=sys.stderr)
        return 2
    for line in _load_problems(registry):
        print(f"warning: {line}", file=sys.stderr)
    for name, plug in host.plugs.items():
        for line in plug.check_warnings():
            print(f"warning: plugs.{name}: {line}", file=sys.stderr)
    print(f"{args.file}: OK ({len(host.plugs)} plugs, {len(host.channels)} channels, "
          f"{len(host.hooks)} hooks; database {host.store.describe()})")
    return 0


def _describe_dist(dist: Any, specs: dict[str, Any]) -> list[str]:
    if dist.disabled:
        return [f"{dist.name} {dist.version}  DISABLED ({dist.disabled})"]
    if dist.error:
        what = "REFUSED" if dist.refused else "FAILED TO LOAD"
        return [f"{dist.name} {dist.version}  {what}: {dist.error}"]
    lines = [f"{dist.name} {dist.version}  ({dist.entry_point})"]
    if dist.plug_types:
        lines.append("  plug types: " + ", ".join(
            f"{n} ({c.__module__}.{c.__qualname__})" for n, c in sorted(dist.plug_types.items())))
    if dist.hook_types:
        lines.append("  hook types: " + ", ".join(
            f"{n} ({c.__module__}.{c.__qualname__})" for n, c in sorted(dist.hook_types.items())))
    implemented = set(dist.specs)
    for cls in [*dist.plug_types.values(), *dist.hook_types.values()]:
        implemented |= {n for n in specs if n in vars(cls) or any(n in vars(b) for b in cls.__mro__[:-3])}
    reg_specs = sorted(n for n in implemented if n in specs and specs[n].chanmux_call == "register")
    async_specs = sorted(n for n in implemented if n in specs and specs[n].chanmux_call != "register")
    if reg_specs:
        lines.append("  registers: " + ", ".join(reg_specs))
    if async_specs:
        lines.append("  hook specs: " + ", ".join(async_specs))
    return lines


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry()
    print(f"chanmux {__version__}")
    specs = hookspecs.spec_functions()
    production = [d for d in registry.distributions if not d.test_kit]
    kit = [d for d in registry.distributions if d.test_kit]
    for dist in production:
        print()
        print("\n".join(_describe_dist(dist, specs)))
    if not production:
        print("\nno plugin packages installed (pip install chanmux-irc chanmux-matrix chanmux-sync)")
    if kit:
        print("\ntest kit (chanmux.testing: the in-memory plug and the recorder hook, for tests and "
              "for trying chanmux out; not for bridging networks):")
        for dist in kit:
            print("\n".join("  " + line for line in _describe_dist(dist, specs)))
    problems = _env_names_unknown(registry)
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    failed = [d for d in registry.distributions if d.error]
    if failed:
        print(f"\n{len(failed)} plugin package{'s' if len(failed) > 1 else ''} failed to load: "
              + ", ".join(d.name for d in failed), file=sys.stderr)
    return 1 if failed else 0


def _starter(registry: Registry, name: str) -> str:
    """The starter config: each installed plugin's section (plugs first, then hooks fed the
    channel names the plug sections define), or the test kit's memory network alone."""
    caller = registry.pm.hook.chanmux_starter
    owners = {f"dist:{d.name}": d for d in registry.distributions}
    plug_parts: list[str] = []
    hook_parts: list[str] = []
    pending = []
    for impl in reversed(caller.get_hookimpls()):
        dist = owners.get(impl.plugin_name)
        if dist is not None and dist.test_kit:
            continue
        pending.append((impl, dist))
    pending.sort(key=lambda pair: pair[0].plugin_name)
    first = [(i, d) for i, d in pending if d is not None and d.plug_types]
    later = [(i, d) for i, d in pending if (i, d) not in first]
    channels: list[str] = []
    for impl, _dist in first:
        text = _call_starter(impl, [])
        if text:
            plug_parts.append(text)
            channels += _channel_names(text)
    if not plug_parts:
        plug_parts.append(MEMORY_STARTER)
        channels = _channel_names(MEMORY_STARTER)
    for impl, _dist in later:
        text = _call_starter(impl, list(channels))
        if text:
            hook_parts.append(text)
    loaded = sorted(d.name for d in registry.distributions
                    if not d.test_kit and not d.error and not d.disabled)
    missing = []
    for package, what in PACKAGES.items():
        dist = registry.find(package)
        if dist is None:
            missing.append(f"#   {package}: {what}")
        elif dist.disabled or dist.error:
            why = f"disabled by {dist.disabled}" if dist.disabled else "failed to load"
            missing.append(f"#   {package}: {what} (installed but {why})")
    tail = ("\n# Not in this starter (pip install NAME, then `chanmux init` again):\n"
            + "\n".join(missing) + "\n") if missing else ""
    head = STARTER_HEAD.format(name=name, installed=", ".join(loaded) or "none")
    return "\n".join([head, *plug_parts, *hook_parts]).rstrip("\n") + "\n" + tail


def _call_starter(impl: Any, channels: list[str]) -> str | None:
    try:
        text = impl.function(**({"channels": channels} if "channels" in impl.argnames else {}))
    except Exception as exc:  # noqa: BLE001 - one plugin's broken section leaves the rest
        print(f"warning: {impl.plugin_name.removeprefix('dist:')}: no starter section: "
              f"{describe(exc)}", file=sys.stderr)
        return None
    return text.strip("\n") + "\n" if text else None


def _channel_names(text: str) -> list[str]:
    try:
        channels = config_mod.tomllib.loads(text).get("channels", {})
    except config_mod.tomllib.TOMLDecodeError:
        return []
    return list(channels) if isinstance(channels, dict) else []


def _examples(registry: Registry) -> dict[str, tuple[str, Any]]:
    """Every example config the installed plugins ship: name -> (package, resource)."""
    found: dict[str, tuple[str, Any]] = {}
    for impl in reversed(registry.pm.hook.chanmux_examples.get_hookimpls()):
        package = impl.plugin_name.removeprefix("dist:")
        try:
            provided = impl.function() or {}
        except Exception as exc:  # noqa: BLE001 - one plugin's broken list leaves the rest
            print(f"warning: {package}: no examples: {describe(exc)}", file=sys.stderr)
            continue
        for name, resource in provided.items():
            if name in found:
                print(f"warning: example {name!r} of {package} is also given by "
                      f"{found[name][0]}; using {found[name][0]}'s", file=sys.stderr)
                continue
            found[name] = (package, resource)
    return dict(sorted(found.items()))


def _summary(text: str) -> str:
    """The first sentence of an example's opening comment."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    first = " ".join(lines)
    return re.split(r"(?<=\.)\s", first, maxsplit=1)[0] if first else ""


def _needs(text: str, registry: Registry) -> list[str]:
    """The packages an example's types need that are not loaded."""
    try:
        data = config_mod.tomllib.loads(text)
    except config_mod.tomllib.TOMLDecodeError:
        return []
    needed = []
    for kind, section, loaded in (("plug", "plugs", registry.plug_types),
                                  ("hook", "hooks", registry.hook_types)):
        for entry in (data.get(section) or {}).values():
            type_name = entry.get("type") if isinstance(entry, dict) else None
            if isinstance(type_name, str) and type_name not in loaded:
                package = KNOWN_TYPES.get(kind, {}).get(type_name, f'a package with {kind} type "{type_name}"')
                if package not in needed:
                    needed.append(package)
    return needed


def _list_examples(registry: Registry) -> int:
    examples = _examples(registry)
    if not examples:
        print("no installed plugin package ships examples (pip install chanmux-sync chanmux-irc "
              "chanmux-matrix)")
        return 0
    print("examples (write one with `chanmux init --example NAME FILE`):")
    for name, (package, resource) in examples.items():
        text = resource.read_text(encoding="utf-8")
        needs = _needs(text, registry)
        more = f"; needs {', '.join(needs)}, not installed" if needs else ""
        print(f"  {name:<16} {_summary(text)}  ({package}{more})")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    registry = _registry()
    text = None
    if args.example == "":
        return _list_examples(registry)
    if args.example is not None:
        examples = _examples(registry)
        if args.example not in examples:
            known = ", ".join(examples) or "none installed"
            print(f"error: no example named {args.example!r} (examples: {known}; "
                  f"`chanmux init --example` lists them)", file=sys.stderr)
            return 2
        text = examples[args.example][1].read_text(encoding="utf-8")
    path = Path(args.file or (f"{args.example}.toml" if args.example else "chanmux.toml"))
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
        if text is None:
            text = _starter(registry, path.name)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    names = sorted(set(re.findall(r"^[^#\n]*\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text, re.M)))
    env = f" (it reads {', '.join(names)} from the environment)" if names else ""
    print(f"wrote {path}; change what it says to change, then check it with "
          f"`chanmux check {path}`{env}")
    if args.example is not None:
        needs = _needs(text, registry)
        if needs:
            print(f"warning: this example needs {', '.join(needs)}, not installed", file=sys.stderr)
    return 0


class _Hangups:
    """SIGHUP for the whole of `chanmux run`, from before the plugins and the config are
    loaded until the process ends: it never stops the bridge. The handler only counts the
    signal and wakes the event loop through a socket pair (logging inside a signal handler
    could interrupt a line being written); the loop, or `cmd_run` outside it, then reopens
    the log file and says so."""

    def __init__(self) -> None:
        self.received = 0
        self.handled = 0
        self._wake, self._woken = socket.socketpair()
        for end in (self._wake, self._woken):
            end.setblocking(False)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.received += 1
        try:
            self._wake.send(b"\0")
        except OSError:  # full (the loop has a byte to read already) or closed at the end
            pass

    def handle(self, log_file: str | None, notifier: Notifier | None = None) -> None:
        """Act on the SIGHUPs received since the last call: reopen the log file (logrotate
        renamed it away) and log one line saying so; a service manager that heard READY=1
        hears RELOADING=1 before and READY=1 after."""
        if self.received == self.handled:
            return
        self.handled = self.received
        reloading = notifier is not None and notifier.reloading()
        try:
            if not log_file:
                log.info("received SIGHUP; there is no log file to reopen (the log goes to "
                         "standard error)")
                return
            try:
                logs.reopen()
            except OSError as exc:
                log.warning("received SIGHUP; cannot reopen the log file %s (%s); still "
                            "writing to the file opened before", log_file, describe(exc))
                return
            log.info("received SIGHUP; reopened the log file %s", log_file)
        finally:
            if reloading and notifier is not None:
                notifier.reloaded()

    async def serve(self, log_file: str | None, notifier: Notifier) -> None:
        """Handle SIGHUPs in the event loop until cancelled (also those received before it)."""
        while True:
            try:
                while self._woken.recv(4096):
                    pass
            except BlockingIOError:
                pass
            self.handle(log_file, notifier)
            await anyio.wait_readable(self._woken)

    def close(self) -> None:
        """Close the socket pair; the handler stays, so a late SIGHUP still harms nothing."""
        self._wake.close()
        self._woken.close()


async def _run(host: Host, hangups: _Hangups | None = None, notifier: Notifier | None = None,
               log_file: str | None = None) -> None:
    """Run `host` until SIGINT or SIGTERM: SIGHUP reopens the log file meanwhile (also while
    the host stops), and the service manager hears how the bridge is (`notifier`)."""
    notifier = notifier or Notifier(None)
    try:
        async with anyio.create_task_group() as tg:
            stop = anyio.CancelScope()

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    async for signum in received:
                        log.info("received %s; stopping", signal.Signals(signum).name)
                        notifier.stop()
                        if host.running:
                            await host.settle()
                        stop.cancel()
                        return

            if hangups is not None:
                tg.start_soon(hangups.serve, log_file, notifier)
            tg.start_soon(signals)
            notifier.status("starting: opening the database and the hooks")
            with stop:
                async with anyio.create_task_group() as inner:
                    await inner.start(host.run)
                    inner.start_soon(notifier.follow, host)
            tg.cancel_scope.cancel()  # the host has stopped: SIGHUP is handled up to here
    finally:
        notifier.stop()


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
    hangups = _Hangups()  # first of all: a SIGHUP while plugins and config load stops nothing
    try:
        return _run_command(args, hangups)
    finally:
        hangups.close()


def _run_command(args: argparse.Namespace, hangups: _Hangups) -> int:
    if args.backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            print("error: --backend trio needs trio, which is not installed: pip install trio",
                  file=sys.stderr)
            return 2
    registry = _registry(args.file)
    try:
        raw = config_mod.tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, config_mod.tomllib.TOMLDecodeError, UnicodeDecodeError):
        raw = {}
    try:
        cfg, host = _load(args.file, registry)
    except (ConfigError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for line in _load_problems(registry, str(exc)):
            print(f"warning: {line}", file=sys.stderr)
        return 2
    try:
        logs.setup(args.log_level or cfg.logging.level, cfg.logging.levels, cfg.logging.file,
                   secrets=_secrets(config_mod.expand_env(raw, os.environ)),
                   format=cfg.logging.format)
    except (OSError, ValueError) as exc:
        print(f"error: logging: {exc}", file=sys.stderr)
        return 2
    for line in _load_problems(registry):
        log.warning("%s", line)
    log.info("chanmux %s starting: %d plugs, %d hooks", __version__, len(host.plugs), len(host.hooks))
    notifier = Notifier.from_environ()
    try:
        anyio.run(_run, host, hangups, notifier, cfg.logging.file, backend=args.backend)
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
    finally:
        notifier.close()
        hangups.handle(cfg.logging.file)  # one received after the event loop ended
    return 0


def _versions() -> str:
    """Core's version and every installed distribution with a `chanmux.plugins` entry point,
    read from their metadata (nothing is imported)."""
    lines = [f"chanmux {__version__}"]
    seen = {"chanmux"}
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist
        name = dist.metadata["Name"] if dist else ep.name
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        lines.append(f"{name} {dist.version if dist else '(version unknown)'}")
    return "\n".join(lines)


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(_versions())
        parser.exit()


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import cmd_status

    return cmd_status(args)


def make_parser(plugin_commands: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chanmux", description="Bridge chat networks.")
    parser.add_argument("--version", action=_Version,
                        help="show the versions of chanmux and every installed chanmux plugin package")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do; `chanmux COMMAND --help` says more")
    p = sub.add_parser("run", help="run the bridge described by a config file")
    p.add_argument("file", help="the config file (TOML)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level, instead of the config's logging.level")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio",
                   help="the event loop to run on (default: asyncio; trio needs trio installed)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("check", help="check a config file without connecting anywhere")
    p.add_argument("file", help="the config file (TOML)")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("status", help="what a bridge is doing: plugs, links, channels, queued "
                                      "copies (asked of it through [http] listen, or read from "
                                      "its database when it is stopped)")
    p.add_argument("file", help="the config file (TOML) of the bridge")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(fn=_cmd_status)
    p = sub.add_parser("plugins", help="list installed plugin packages and what they provide "
                                       "(exit 1 if one failed to load)")
    p.add_argument("--strict", action="store_true",
                   help="kept for old scripts: a plugin that failed to load always exits 1")
    p.set_defaults(fn=cmd_plugins)
    p = sub.add_parser("init", help="write a commented starter config for the installed plugins, "
                                    "or an example")
    p.add_argument("file", nargs="?", default=None,
                   help="the file to write (default: chanmux.toml, or NAME.toml for --example NAME)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--example", nargs="?", const="", metavar="NAME",
                   help="write the example config NAME the installed plugins ship; alone, list them")
    p.set_defaults(fn=cmd_init)
    if plugin_commands:
        _add_plugin_commands(sub, set(sub.choices))
    return parser


CORE_COMMANDS = ("run", "check", "status", "plugins", "init")


def _add_plugin_commands(sub: Any, taken: set[str], registry: Registry | None = None) -> None:
    """The subcommands installed plugin packages add (`chanmux_commands`)."""
    registry = _registry() if registry is None else registry
    owner: dict[str, str] = {name: "chanmux" for name in taken}
    for impl in sorted(registry.pm.hook.chanmux_commands.get_hookimpls(), key=lambda i: i.plugin_name):
        name = impl.plugin_name.removeprefix("dist:")
        try:
            commands = impl.function() or []
        except Exception as exc:  # noqa: BLE001 - one plugin's bug never breaks the command
            print(f"warning: {name}: chanmux_commands failed: {describe(exc)}", file=sys.stderr)
            continue
        for command in commands:
            if command.name in owner:
                print(f"warning: {name}: command {command.name!r} not added: "
                      f"{owner[command.name]} has one of that name", file=sys.stderr)
                continue
            owner[command.name] = name
            p = sub.add_parser(command.name, help=f"{command.help} (from {name})")
            if command.config:
                p.add_argument("file", help="the config file (TOML) of the bridge")
            if command.arguments is not None:
                command.arguments(p)
            p.set_defaults(fn=_with_config(command.run) if command.config else command.run)


def _with_config(run: Any) -> Any:
    """`run` of a command that takes the config file: read it first (its keys, as `check`
    does, without the plugs' and hooks' own checks) and give it as `args.config`."""

    def with_config(args: argparse.Namespace) -> int:
        try:
            args.config = config_mod.load(args.file, _registry(args.file))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        code: int = run(args)
        return code

    return with_config


def _wants_plugin_commands(argv: Sequence[str]) -> bool:
    """Whether the command line may name a plugin's command (or asks for the help that lists
    them): the plugins are loaded only then, so that `run`, `check`, ... load them once."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return (first is not None and first not in CORE_COMMANDS) or (
        first is None and any(a in ("-h", "--help") for a in argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser(plugin_commands=_wants_plugin_commands(argv)).parse_args(argv)
    try:
        code: int = args.fn(args)
    except BrokenPipeError:  # `chanmux plugins | head`: the reader went away; say nothing
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
