"""Schema migrations: each package's tables carry their own version history (Alembic).

A package that owns tables returns them from ``chanmux_metadata()`` on a ``MetaData`` whose
``info["migrations"]`` says where its Alembic revision scripts are: a package name
(``"chanmux_sync.migrations"``) or a folder. Its history is one Alembic branch whose first
revision has ``branch_labels = ("<distribution name>",)``; the host runs it at start, through
Alembic's API (no ``alembic.ini``, no ``env.py``). A ``MetaData`` without that key keeps the
0.1.0 behaviour: its missing tables are created, nothing is versioned.

Each package's revision is kept in a version table of its own, ``chanmux_schema_<name>``
(``chanmux_schema_chanmux_sync``). One shared table could not tell which package a revision
it does not know belongs to: a newer release of an installed package (refused) or a package
that is no longer installed (left alone).

A database written before schema versions (chanmux 0.1.0: tables, no version table) needs
nothing special: each first revision creates only the tables that are not there yet.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from ..errors import ActionRequired

log = logging.getLogger("chanmux.migrations")
# Alembic's INFO lines ("Context impl SQLiteImpl", "Will assume non-transactional DDL", one per
# step) say less than the store's own line per revision, and the second is wrong here: the
# store runs every migration in one transaction of its own.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

#: The key of ``MetaData.info`` naming a package's migrations (a package name or a folder).
INFO_KEY = "migrations"


class MigrationProblem(ActionRequired):
    """A package's migrations cannot bring the database to the installed schema (one line);
    the store reports it as DatabaseUnusable, naming the database."""


@attrs.frozen
class History:
    """One package's tables and their revisions."""

    #: the distribution name (the branch label of the first revision)
    package: str
    folder: Path
    script: ScriptDirectory
    metadata: sa.MetaData

    @property
    def version_table(self) -> str:
        return version_table(self.package)

    def heads(self) -> tuple[str, ...]:
        return tuple(self.script.get_heads())

    def knows(self, revision: str) -> bool:
        try:
            return self.script.get_revision(revision) is not None
        except CommandError:
            return False


def version_table(package: str) -> str:
    """The name of the table holding `package`'s revision (at most 63 characters)."""
    slug = re.sub(r"[^a-z0-9]+", "_", package.lower()).strip("_")
    name = f"chanmux_schema_{slug}"
    if len(name) > 63:
        name = f"{name[:54]}_{hashlib.sha1(slug.encode()).hexdigest()[:8]}"
    return name


def folder_of(location: str | os.PathLike[str]) -> Path:
    """The folder of a package name (``"chanmux_sync.migrations"``) or a folder path."""
    if isinstance(location, os.PathLike) or os.sep in location or "/" in location:
        folder = Path(location)
    else:
        try:
            folder = Path(str(importlib.resources.files(location)))
        except (ModuleNotFoundError, TypeError) as exc:
            raise MigrationProblem(f'migrations "{location}": cannot import it ({exc})') from None
    if not folder.is_dir():
        raise MigrationProblem(f"migrations {folder}: not a folder")
    return folder


def history_of(md: sa.MetaData) -> History | None:
    """The history a MetaData declares in ``info["migrations"]``; None if it declares none."""
    location = md.info.get(INFO_KEY)
    if location is None:
        return None
    folder = folder_of(location)
    script = ScriptDirectory(folder, version_locations=[folder])
    try:
        bases = [script.get_revision(b) for b in script.get_bases()]
    except CommandError as exc:
        raise MigrationProblem(f"migrations {folder}: {exc}") from None
    labels = sorted({label for base in bases if base for label in base.branch_labels})
    if len(bases) != 1 or len(labels) != 1:
        raise MigrationProblem(
            f"migrations {folder}: expected one first revision with one branch label (the "
            f"distribution name), found {len(bases)} first revisions and labels {labels}")
    return History(labels[0], folder, script, md)


def histories(metadatas: Iterable[sa.MetaData]) -> tuple[list[History], list[sa.MetaData]]:
    """The histories the MetaData declare (one per folder), and the MetaData declaring none."""
    found: dict[Path, History] = {}
    plain: list[sa.MetaData] = []
    for md in metadatas:
        history = history_of(md)
        if history is None:
            if all(md is not p for p in plain):
                plain.append(md)
        elif history.folder.resolve() not in found:
            found[history.folder.resolve()] = history
    return list(found.values()), plain


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def current(conn: Connection, history: History) -> tuple[str, ...]:
    """The revisions `history`'s version table holds (empty when it has none)."""
    if not sa.inspect(conn).has_table(history.version_table):
        return ()
    ctx = MigrationContext.configure(connection=conn,
                                     opts={"version_table": history.version_table})
    return tuple(ctx.get_current_heads())


def newer_problem(conn: Connection, history: History) -> str | None:
    """Why the installed package cannot use its tables because a newer release of it wrote
    them (a revision it does not know); None if it can."""
    unknown = [rev for rev in current(conn, history) if not history.knows(rev)]
    if not unknown:
        return None
    package = history.package
    version = installed_version(package)
    installed = f"{package} {version}" if version else f"the installed {package}"
    return (f"its {package} tables are at schema revision {', '.join(unknown)}, newer than "
            f"{installed} knows (its newest is {', '.join(history.heads())}): install the "
            f"{package} release that wrote it or a later one (pip install -U {package}), "
            f"or use another database")


def upgrade(conn: Connection, history: History, where: str = "") -> list[str]:
    """Bring `history`'s tables to its newest revision, in the transaction `conn` is in
    (blocking). Returns the revisions applied, oldest first. MigrationProblem if the
    database is newer or a revision fails. `where` names the database in log lines."""
    problem = newer_problem(conn, history)
    if problem:
        raise MigrationProblem(problem)
    heads = current(conn, history)
    if set(heads) == set(history.heads()):
        return []
    if not heads:
        present = [t for t in history.metadata.tables if sa.inspect(conn).has_table(t)]
        if present:
            log.info("database %s: %s tables without a schema version (%s; written before "
                     "chanmux 0.2.0): adopting them and upgrading", where, history.package,
                     ", ".join(present))
    applied: list[str] = []
    running: list[Any] = [None]

    def steps(rev: Any, _context: Any) -> Iterator[MigrationStep]:
        scripts = reversed(list(history.script.iterate_revisions("heads", rev, implicit_base=True)))
        for script in scripts:
            running[0] = script
            yield MigrationStep.upgrade_from_script(history.script.revision_map, script)
            applied.append(script.revision)

    ctx = MigrationContext.configure(
        connection=conn,
        opts={"version_table": history.version_table, "fn": steps,
              "target_metadata": history.metadata})
    try:
        with Operations.context(ctx):
            ctx.run_migrations()
    except Exception as exc:
        script = running[0]
        if script is None:
            raise
        from ..errors import describe

        text = describe(exc).strip().splitlines()
        raise MigrationProblem(
            f"upgrading the {history.package} tables to schema revision {script.revision} "
            f"({script.doc or script.path}) failed: {text[0] if text else type(exc).__name__}; "
            f"the database was left as it was") from exc
    if applied:
        log.info("database %s: %s tables upgraded to schema revision %s (ran %s)", where,
                 history.package, applied[-1], ", ".join(applied))
    return applied


__all__ = ["INFO_KEY", "History", "MigrationProblem", "current", "histories", "history_of",
           "newer_problem", "upgrade", "version_table"]
