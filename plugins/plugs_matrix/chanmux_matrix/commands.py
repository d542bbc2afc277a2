"""`chanmux matrix-registration FILE`: write the registration file of an application service.

For a Matrix plug with ``registration = "..."`` in the bridge's config, it writes that file
(id, url, fresh random ``as_token`` and ``hs_token``, ``sender_localpart``, exclusive
namespaces for the ghosts and their room aliases) for the homeserver to load. An existing
file is kept unless ``--force``: its tokens are what the homeserver knows.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from chanmux import Command, Config

from .appservice import Registration
from .config import MatrixConfig


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plug", help="the Matrix plug to write it for (when the config has several)")
    parser.add_argument("--url", help="where the homeserver reaches the bridge (default: "
                                      "http:// and the config's [http] listen)")
    parser.add_argument("--force", action="store_true",
                        help="write it again with new tokens (then restart the homeserver)")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def write_registration(args: argparse.Namespace) -> int:
    config: Config = args.config
    plugs = {name: entry for name, entry in config.plugs.items()
             if isinstance(entry.config, MatrixConfig) and entry.config.registration}
    if args.plug:
        if args.plug not in plugs:
            return _fail(f"{args.file}: plugs.{args.plug} is not a Matrix plug with registration "
                         f"set")
        name = args.plug
    elif len(plugs) == 1:
        name = next(iter(plugs))
    elif not plugs:
        return _fail(f'{args.file}: no Matrix plug has registration set: add registration = '
                     f'"matrix-registration.yaml" to its [plugs.NAME] table')
    else:
        return _fail(f"{args.file}: several Matrix plugs have registration set "
                     f"({', '.join(sorted(plugs))}): choose one with --plug")
    plug: MatrixConfig = plugs[name].config
    url = args.url or (f"http://{config.http.listen}" if config.http.listen else None)
    if url is None:
        return _fail(f"{args.file}: the homeserver reaches an application service over HTTP: set "
                     f'[http] listen (e.g. "127.0.0.1:9180"), or give --url')
    assert plug.registration is not None
    path = Path(plug.registration).expanduser()
    if not path.is_absolute():
        path = (config.path.parent if config.path else Path.cwd()) / path
    if path.exists() and not args.force:
        return _fail(f"{path} exists: the homeserver knows its tokens; --force writes new ones "
                     f"(then restart the homeserver)")
    if not path.parent.is_dir():
        return _fail(f"cannot write {path}: folder {path.parent} does not exist")
    registration = Registration.new(plug=name, url=url, user_id=plug.user_id,
                                    prefix=plug.ghost_prefix)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds secrets
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(registration.dump())
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}")
    print(f"wrote {path} (application service {registration.id}: the bridge account "
          f"{plug.user_id}, ghosts {registration.users[0]}, reached at {url}).\n"
          f"Next: add it to the homeserver's config and restart the homeserver:\n"
          f"  app_service_config_files:\n    - {path}")
    return 0


COMMANDS = [Command("matrix-registration", "write the application service registration file of "
                    "a Matrix plug, for the homeserver", run=write_registration,
                    arguments=_arguments, config=True)]

__all__ = ["COMMANDS", "write_registration"]
