"""Schema migrations: each package's tables carry their own version, upgraded at start.

Every test runs on a SQLite file and on a database of its own on a real PostgreSQL server.
A third party's package is played by a folder of Alembic revisions written by the test.
"""

import subprocess
import sys
import textwrap
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from chanmux import Store
from chanmux.journal import metadata as journal_metadata
from chanmux.store import DatabaseUnusable
from chanmux.store import metadata as core_metadata

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.sqlite'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = f"mig_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def tables(url):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def revisions(url, package):
    engine = sa.create_engine(url)
    table = "chanmux_schema_" + package.replace("-", "_")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return None
            return sorted(r[0] for r in conn.exec_driver_sql(f"SELECT version_num FROM {table}"))
    finally:
        engine.dispose()


def schema_diff(url, md):
    """How the tables of `md` in the database differ from their declaration (tables of
    others are not differences)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), md)
    finally:
        engine.dispose()
    return [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table")]


def execute(url, *statements):
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def name_of(url):
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def create(url, *metadatas):
    store = Store(url)
    try:
        store.create([journal_metadata, *metadatas])
    finally:
        store.dispose()


# -- a third party's package with migrations ------------------------------------------------

REVISION = '''\
"""{doc}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = None


def upgrade():
{body}


def downgrade():
    pass
'''


class Package:
    """A package `acme-notes` whose tables change over its releases (a revision each)."""

    def __init__(self, folder):
        self.folder = folder
        folder.mkdir()
        self.revs = []
        self.metadata = sa.MetaData(info={"migrations": str(folder)})

    def release(self, doc, body):
        rev = f"acme_{len(self.revs) + 1:04d}"
        down = self.revs[-1] if self.revs else None
        labels = None if self.revs else ("acme-notes",)
        text = REVISION.format(doc=doc, rev=rev, down=down, labels=labels,
                               body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
        (self.folder / f"{rev}.py").write_text(text)
        self.revs.append(rev)
        return rev


NOTES_1 = """
    op.create_table("acme_note", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("text", sa.String(200), nullable=False))
"""
NOTES_2 = """
    op.add_column("acme_note", sa.Column("author", sa.String(200), nullable=True))
    op.execute("UPDATE acme_note SET author = 'unknown'")
"""


# -- core's own tables ----------------------------------------------------------------------


async def test_a_new_database_gets_every_core_table_at_the_newest_revision(db_url):
    create(db_url)
    assert {"chanmux_state", "chanmux_journal", "chanmux_published", "chanmux_schema_chanmux"} <= tables(db_url)
    assert revisions(db_url, "chanmux") == ["chanmux_0003"]
    assert schema_diff(db_url, core_metadata) == [], (
        "core's migrations do not make the tables chanmux.store declares")


async def test_a_database_of_chanmux_0_1_0_is_recognised_and_upgraded(db_url, caplog):
    """0.1.0 made chanmux_state with create_all and kept no schema version."""
    execute(db_url,
            "CREATE TABLE chanmux_state (owner VARCHAR(200) NOT NULL, key VARCHAR(200) NOT NULL, "
            "value TEXT NOT NULL, PRIMARY KEY (owner, key))",
            "INSERT INTO chanmux_state VALUES ('matrix', 'since', '\"s42\"')")
    caplog.set_level("INFO", "chanmux.migrations")
    create(db_url)
    assert revisions(db_url, "chanmux") == ["chanmux_0003"]
    assert "chanmux_journal" in tables(db_url)
    store = Store(db_url)
    assert await store.get_state("matrix", "since") == "s42"
    store.dispose()
    assert caplog.messages == [
        f"database {name_of(db_url)}: chanmux tables without a schema version (chanmux_state; "
        "written before chanmux 0.2.0): adopting them and upgrading",
        f"database {name_of(db_url)}: chanmux tables upgraded to schema revision chanmux_0003 "
        "(ran chanmux_0001, chanmux_0002, chanmux_0003)"]
    caplog.clear()
    create(db_url)
    assert not [m for m in caplog.messages if "upgraded" in m], "a second start migrates nothing"


async def test_a_database_newer_than_core_is_refused_in_one_line(db_url):
    create(db_url)
    execute(db_url, "UPDATE chanmux_schema_chanmux SET version_num = 'chanmux_0099'")
    before = tables(db_url)
    with pytest.raises(DatabaseUnusable) as raised:
        create(db_url)
    line = str(raised.value)
    assert line.startswith(f"{name_of(db_url)}: its chanmux tables are at schema revision "
                           "chanmux_0099, newer than ")
    assert line.endswith("knows (its newest is chanmux_0003): install the chanmux release that "
                         "wrote it or a later one (pip install -U chanmux), or use another database")
    assert "\n" not in line
    assert tables(db_url) == before
    store = Store(db_url)
    assert store.check_schema([]) == line
    store.dispose()


# -- a third party's tables -----------------------------------------------------------------


async def test_a_package_without_migrations_has_its_tables_created_as_before(db_url):
    md = sa.MetaData()
    sa.Table("plain_thing", md, sa.Column("id", sa.Integer, primary_key=True))
    create(db_url, md)
    create(db_url, md)
    assert "plain_thing" in tables(db_url)
    assert not [t for t in tables(db_url) if t.startswith("chanmux_schema_") and "plain" in t]


async def test_a_package_release_that_changes_its_table_upgrades_the_rows_kept(db_url, tmp_path):
    pkg = Package(tmp_path / "acme_migrations")
    pkg.release("notes", NOTES_1)
    create(db_url, pkg.metadata)
    execute(db_url, "INSERT INTO acme_note (id, text) VALUES (1, 'kept')")
    pkg.release("notes have an author", NOTES_2)
    create(db_url, pkg.metadata)
    assert revisions(db_url, "acme-notes") == ["acme_0002"]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id, text, author FROM acme_note").all() == [
            (1, "kept", "unknown")]
    engine.dispose()


async def test_a_failing_migration_is_one_line_and_leaves_the_database_as_it_was(db_url, tmp_path):
    pkg = Package(tmp_path / "acme_migrations")
    pkg.release("notes", NOTES_1)
    create(db_url, pkg.metadata)
    execute(db_url, "INSERT INTO acme_note (id, text) VALUES (1, 'kept')")
    before = tables(db_url)
    pkg.release("notes have an author", NOTES_2 + '\n    op.execute("SELECT * FROM no_such_table")')
    with pytest.raises(DatabaseUnusable) as raised:
        create(db_url, pkg.metadata)
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith(f"{name_of(db_url)}: upgrading the acme-notes tables to schema "
                           "revision acme_0002 (notes have an author) failed: ")
    assert "no_such_table" in line
    assert line.endswith("; the database was left as it was")
    assert tables(db_url) == before
    assert revisions(db_url, "acme-notes") == ["acme_0001"]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("acme_note")}
    engine.dispose()
    assert columns == {"id", "text"}, "the added column was rolled back"
    pkg.release_fixed = (tmp_path / "acme_migrations" / "acme_0002.py")
    pkg.release_fixed.write_text(pkg.release_fixed.read_text().replace(
        'op.execute("SELECT * FROM no_such_table")', "pass"))
    create(db_url, pkg.metadata)
    assert revisions(db_url, "acme-notes") == ["acme_0002"]


async def test_a_failing_first_migration_leaves_a_new_database_empty(db_url, tmp_path):
    pkg = Package(tmp_path / "acme_migrations")
    pkg.release("notes", NOTES_1 + '\n    op.execute("SELECT * FROM no_such_table")')
    with pytest.raises(DatabaseUnusable, match="revision acme_0001 .* failed"):
        create(db_url, pkg.metadata)
    assert tables(db_url) == set(), "not even core's tables were kept"


async def test_a_package_newer_than_installed_is_named_and_the_others_start(db_url, tmp_path):
    pkg = Package(tmp_path / "acme_migrations")
    pkg.release("notes", NOTES_1)
    create(db_url, pkg.metadata)
    execute(db_url, "UPDATE chanmux_schema_acme_notes SET version_num = 'acme_0007'")
    with pytest.raises(DatabaseUnusable, match="its acme-notes tables are at schema revision "
                                               "acme_0007, newer than the installed acme-notes"):
        create(db_url, pkg.metadata)
    create(db_url)  # acme-notes uninstalled: its tables and revision are left alone
    assert revisions(db_url, "acme-notes") == ["acme_0007"]


async def test_revisions_without_a_branch_label_are_refused_naming_the_folder(db_url, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    (folder / "r1.py").write_text(REVISION.format(doc="x", rev="u1", down=None, labels=None,
                                                  body="    pass"))
    md = sa.MetaData(info={"migrations": str(folder)})
    with pytest.raises(DatabaseUnusable, match=f"migrations {folder}: expected one first "
                                               "revision with one branch label"):
        create(db_url, md)


# -- the command line -----------------------------------------------------------------------


def test_run_refuses_a_newer_database_in_one_line(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[plugs.a]\ntype = "memory"\n\n[channels.a]\nplug = "a"\nsource = "#a"\n')
    chanmux = [sys.executable, "-m", "chanmux.cli"]
    db = tmp_path / "bridge.sqlite"
    create(f"sqlite:///{db}")
    execute(f"sqlite:///{db}", "UPDATE chanmux_schema_chanmux SET version_num = 'chanmux_0099'")
    before = db.read_bytes()
    out = subprocess.run([*chanmux, "run", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr  # found while checking the config, before starting
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {path}: database: {db}: its chanmux tables are at "
                               "schema revision chanmux_0099, newer than ")
    assert db.read_bytes() == before


def test_check_refuses_a_newer_sqlite_database_without_changing_it(tmp_path):
    """`chanmux check` says what `run` would: the file is from a newer release."""
    path = tmp_path / "bridge.toml"
    db = tmp_path / "bridge.sqlite"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n\n[plugs.a]\ntype = "memory"\n\n'
                    '[channels.a]\nplug = "a"\nsource = "#a"\n')
    chanmux = [sys.executable, "-m", "chanmux.cli"]
    create(f"sqlite:///{db}")
    execute(f"sqlite:///{db}", "UPDATE chanmux_schema_chanmux SET version_num = 'chanmux_0099'")
    before = db.read_bytes()
    out = subprocess.run([*chanmux, "check", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stderr
    assert f"database.url: {db}: its chanmux tables are at schema revision chanmux_0099" in out.stderr
    assert db.read_bytes() == before
    execute(f"sqlite:///{db}", "UPDATE chanmux_schema_chanmux SET version_num = 'chanmux_0003'")
    out = subprocess.run([*chanmux, "check", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
