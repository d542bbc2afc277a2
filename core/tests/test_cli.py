"""The chanmux command as a user runs it: init, check, run and stop with a signal."""

import argparse
import contextlib
import os
import signal
import subprocess
import sys

import anyio
import pytest

from chanmux.logs import SecretFilter

from core_helpers import FIRST_PARTY

CHANMUX = [sys.executable, "-m", "chanmux.cli"]
#: The installed console script, as a user runs it.
CHANMUX_COMMAND = os.path.join(os.path.dirname(sys.executable), "chanmux")

#: As if only core were installed, wherever these tests run: every first-party plugin disabled.
CORE_ONLY = {**os.environ, "CHANMUX_DISABLE_PLUGINS": FIRST_PARTY}


def run(*args, **kw):
    return subprocess.run([*CHANMUX, *args], capture_output=True, text=True, **kw)


def test_every_option_has_help_text():
    from chanmux.cli import make_parser

    parser = make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(choice.help for choice in sub._choices_actions)
    for name, subparser in [("chanmux", parser), *sub.choices.items()]:
        for action in subparser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    out = subprocess.run([CHANMUX_COMMAND, "init", "--help"], capture_output=True, text=True)
    assert "write the example config NAME the installed plugins ship" in out.stdout


def test_check_reports_every_error_with_its_path_and_connects_nowhere(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[plugs.libera]\ntype = "irc-not-installed"\n\n'
        '[plugs.mem]\ntype = "memory"\nedit = "yes"\nechoo = true\nnetwork = "${UNSET_VAR_X}"\n\n'
        '[channels.c]\nplug = "nowhere"\nsource = "#c"\n')
    out = run("check", str(path), env={"PATH": ""})
    assert out.returncode == 2
    err = out.stderr
    assert "5 problems" in err
    assert 'plugs.libera.type: unknown plug type "irc-not-installed" — installed plug types: ' in err
    assert "memory" in err.split("irc-not-installed")[1].splitlines()[0]
    assert 'plugs.mem.edit: expected true or false, got "yes"' in err
    assert 'plugs.mem.echoo: unknown key (did you mean "echo"?)' in err
    assert "plugs.mem.network: environment variable UNSET_VAR_X is not set" in err
    assert 'channels.c.plug: unknown plug "nowhere"' in err
    assert "Traceback" not in err


def test_check_of_a_missing_file_is_one_line(tmp_path):
    out = run("check", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: no such file: {tmp_path / 'nope.toml'}"


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_stops_cleanly_on_a_signal(tmp_path, signum):
    path = tmp_path / "bridge.toml"
    run("init", str(path), env=CORE_ONLY)
    async with await anyio.open_process([*CHANMUX, "run", str(path)]) as proc:
        log = ""
        with anyio.fail_after(30):
            async for chunk in proc.stderr:
                log += chunk.decode()
                if "lobby: connected" in log and "backroom: connected" in log:
                    break
            proc.send_signal(signum)
            async for chunk in proc.stderr:
                log += chunk.decode()
            code = await proc.wait()
    assert code == 0, log
    assert f"received {signal.Signals(signum).name}; stopping" in log
    assert "chanmux.plug.lobby: closed" in log or "lobby: closed" in log
    assert "stopped" in log
    assert "Traceback" not in log


def test_secrets_never_reach_the_log():
    f = SecretFilter(["s3cr3t-token-value"])
    assert f.clean("login with s3cr3t-token-value failed") == "login with *** failed"
    assert f.clean("GET /sync?access_token=abcdef&since=1") == "GET /sync?access_token=***&since=1"
    assert f.clean('{"password": "hunter2"}') == '{"password": "***"}'


# -- bad databases, files and options: one line naming the key or the file, never a traceback --

SHIM = '''\
import os, sys
_blocked = set(filter(None, os.environ.get("CHANMUX_TEST_BLOCK_IMPORTS", "").split(",")))
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
'''


@pytest.fixture
def without(tmp_path):
    """Environment for a subprocess in which importing the named modules fails, as if they
    were not installed (a sitecustomize on PYTHONPATH blocks them)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)

    def env(*modules):
        path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
        return {**os.environ, "PYTHONPATH": path, "CHANMUX_TEST_BLOCK_IMPORTS": ",".join(modules)}

    return env


def bridge(tmp_path, database=None, name="bridge.toml"):
    path = tmp_path / name
    assert run("init", str(path), env=CORE_ONLY).returncode == 0
    if database is not None:
        path.write_text(path.read_text() + f'\n[database]\nurl = "{database}"\n')
    return path


def one_line_error(out, code=2):
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if " INFO " not in line]
    assert len(lines) == 1, out.stderr
    return lines[0]


def check_and_run(path, **kw):
    """`chanmux check` and `chanmux run` of the same file; run must fail before it runs."""
    checked = run("check", str(path), **kw)
    ran = run("run", str(path), timeout=60, **kw)
    return one_line_error(checked), one_line_error(ran)


def test_a_mysql_url_names_the_supported_databases(tmp_path):
    path = bridge(tmp_path, "mysql://bridge:pw@localhost/chanmux")
    for line in check_and_run(path):
        assert line == (f"error: {path}: database.url: mysql is not supported: chanmux supports "
                        "SQLite (sqlite:///PATH/TO/FILE.sqlite) and PostgreSQL "
                        "(postgresql+psycopg://USER:PASSWORD@HOST/DATABASE)")


def test_postgresql_without_psycopg_says_what_to_install(tmp_path, without):
    path = bridge(tmp_path, "postgresql+psycopg://chanmux:secret@localhost/chanmux")
    for line in check_and_run(path, env=without("psycopg")):
        assert line == (f"error: {path}: database.url: PostgreSQL needs psycopg, which is not "
                        'installed: pip install "chanmux[postgres]"')


def test_an_unparsable_url_is_named_without_its_password(tmp_path):
    path = bridge(tmp_path, "postgresql://bridge:hunter22@db:port/x")
    for line in check_and_run(path):
        assert line.startswith(f"error: {path}: database.url: not a database URL: ")
        assert "hunter22" not in line and "chanmux supports SQLite" in line


def test_sqlite_in_a_missing_folder_is_reported_by_check_and_refused_by_run(tmp_path):
    path = bridge(tmp_path, f"sqlite:///{tmp_path / 'nowhere' / 'bridge.sqlite'}")
    for line in check_and_run(path):
        assert line == (f"error: {path}: database.url: folder {tmp_path / 'nowhere'} does not "
                        "exist (for the SQLite file bridge.sqlite)")
    assert not (tmp_path / "nowhere").exists()


def test_check_creates_no_database(tmp_path):
    path = bridge(tmp_path)
    assert run("check", str(path)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge.toml"]


def test_a_file_of_garbage_is_one_line_naming_it(tmp_path):
    path = bridge(tmp_path)
    db = tmp_path / "bridge.sqlite"
    db.write_bytes(bytes(range(256)) * 64)
    for line in check_and_run(path):
        assert line == f"error: {path}: database: {db} is not a SQLite database (file is not a database)"


def _real_database(tmp_path):
    """A database the bridge made and used, then cut short as by a full disk or a bad copy."""
    import sqlalchemy as sa

    db = tmp_path / "bridge.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE chanmux_state (owner VARCHAR(200), key VARCHAR(200), "
                             "value TEXT NOT NULL, PRIMARY KEY (owner, key))")
        conn.exec_driver_sql("INSERT INTO chanmux_state VALUES (?, ?, ?)",
                             [(f"plug{i}", "since", "x" * 400) for i in range(3000)])
    engine.dispose()
    return db


def test_a_truncated_database_is_one_line_naming_it(tmp_path):
    path = bridge(tmp_path)
    db = _real_database(tmp_path)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)
    for line in check_and_run(path):
        assert line == (f"error: {path}: database: {db} is damaged or truncated (database disk "
                        "image is malformed)")


def test_a_database_damaged_in_the_middle_is_found_by_check_too(tmp_path):
    """Random bytes over pages in the middle of the file: reading the schema alone missed it
    (`check` said OK, `run` refused); `check` reads every page now."""
    path = bridge(tmp_path)
    db = _real_database(tmp_path)
    with open(db, "r+b") as f:
        f.seek(db.stat().st_size // 2)
        f.write(bytes((i * 7919) % 251 for i in range(16384)))
    for line in check_and_run(path):
        assert line == (f"error: {path}: database: {db} is damaged or truncated (database disk "
                        "image is malformed)")


@contextlib.contextmanager
def immutable(path):
    """`chattr +i`: not even root may write the file (or create files in the folder)."""
    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)


def test_a_read_only_database_is_refused_before_the_bridge_starts(tmp_path):
    path = bridge(tmp_path)
    db = _real_database(tmp_path)
    with immutable(db):
        checked = one_line_error(run("check", str(path)))
        ran = run("run", str(path), timeout=60)
    assert checked == (f"error: {path}: database: {db} is read-only (attempt to write a readonly "
                       "database); chanmux must write to its database")
    assert one_line_error(ran) == checked
    assert "connected" not in ran.stderr and "ready" not in ran.stderr


def test_a_database_folder_where_sqlite_cannot_keep_its_wal_is_refused(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    path = bridge(folder)
    db = _real_database(folder)
    with immutable(folder):
        checked = one_line_error(run("check", str(path)))
        ran = one_line_error(run("run", str(path), timeout=60))
    assert checked == ran == (
        f"error: {path}: database: cannot open {db}: folder {folder} is not writable (Operation "
        "not permitted); SQLite keeps bridge.sqlite-wal and -shm there")


def test_a_url_that_opens_sqlite_read_only_is_refused(tmp_path):
    db = _real_database(tmp_path)
    path = bridge(tmp_path, f"sqlite:///file:{db}?mode=ro&uri=true", name="ro.toml")
    for line in check_and_run(path):
        assert line == (f"error: {path}: database.url: the URL opens {db} read-only (mode=ro); "
                        "chanmux must write to its database")


def test_init_into_a_missing_folder_or_onto_a_folder(tmp_path):
    target = tmp_path / "nowhere" / "bridge.toml"
    assert one_line_error(run("init", str(target))) == (
        f"error: cannot write {target}: folder {tmp_path / 'nowhere'} does not exist")
    for args in ([str(tmp_path)], ["--force", str(tmp_path)]):
        assert one_line_error(run("init", *args)) == (
            f"error: {tmp_path} is a folder; give the name of the file to write, "
            f"e.g. {tmp_path / 'chanmux.toml'}")


def test_run_with_trio_not_installed_says_to_install_it(tmp_path, without):
    path = bridge(tmp_path)
    out = run("run", "--backend", "trio", str(path), env=without("trio"), timeout=60)
    assert one_line_error(out) == "error: --backend trio needs trio, which is not installed: pip install trio"


def test_a_log_file_in_a_missing_folder_is_a_config_error(tmp_path):
    path = bridge(tmp_path)
    text = path.read_text().replace('level = "INFO"', f'level = "INFO"\nfile = "{tmp_path}/logs/x.log"')
    path.write_text(text)
    for line in check_and_run(path):
        assert line == (f"error: {path}: logging.file: cannot write the log file: folder "
                        f"{tmp_path / 'logs'} does not exist")


def test_run_refuses_a_postgresql_database_that_is_read_only(tmp_path, postgres_url):
    """Found only once connected (check connects nowhere): run stops with one line."""
    import uuid

    import sqlalchemy as sa

    name = f"ro_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    try:
        url = sa.make_url(postgres_url).set(database=name)
        path = bridge(tmp_path, url.render_as_string(hide_password=False))
        assert run("check", str(path)).returncode == 0
        out = run("run", str(path), timeout=60)
        line = one_line_error(out, code=1)
        assert line == (f"error: database.url: {url.render_as_string(hide_password=True)}: "
                        "cannot execute CREATE TABLE in a read-only transaction")
        assert "connected" not in out.stderr
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_a_postgres_url_says_how_to_write_it(tmp_path):
    path = bridge(tmp_path, "postgres://bridge:pw@localhost/chanmux")
    for line in check_and_run(path):
        assert line == (f'error: {path}: database.url: "postgres://" is not a SQLAlchemy URL: '
                        'write postgresql+psycopg:// instead ("postgres://bridge:***@localhost/chanmux")')
