"""The log of a bridge that runs for months: JSON lines for a collector, a log file that
survives logrotate (renamed away, then SIGHUP), SIGHUP that never stops the bridge (while
the plugins load, while it runs, while it stops), and each plugin load error said once.

The bridge is the real `chanmux run`, on the test's anyio backend; the service manager's
socket (test_ops_service.Listener) says when it is ready and when a SIGHUP was handled."""

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux.logs import JsonFormatter, ReopenableFileHandler, SecretFilter, escape_controls

from test_ops_service import CHANMUX_COMMAND, FIRST_PARTY, Listener, bridge, write_bridge
from test_registry import fake_dist

SECRETS = ["hunter2-s3cret", "syt_bridge_token_value"]

SCRIPT = """
import json, logging, sys
from chanmux import logs
logs.setup("DEBUG", secrets=json.loads(sys.argv[2]), format=sys.argv[1])
log = logging.getLogger("chanmux.plug.libera")
for text in json.load(sys.stdin):
    log.warning("server said: %s", text)
try:
    raise ValueError("bad line\\nwith a break, token hunter2-s3cret")
except ValueError:
    log.exception("failed: %s", "x\\r\\ny")
log.info("done")
"""

TEXTS = [
    "hi\r\n2026-01-01 00:00:00 ERROR   chanmux.host: database gone",
    "\x1b[2K\x1b[1A\x1b[31mred\x1b[0m",
    "nul\x00 del\x7f nel\x85 ls\u2028 ps\u2029 vt\x0b ff\x0c bs\x08 café",
    "login with hunter2-s3cret failed",
    "GET /_matrix/client/v3/sync?access_token=abcdef&since=s1",
    '{"password": "swordfish", "user": "bridge"}',
    "Authorization: Bearer syt_bridge_token_value",
    "HTTP 401 M_UNKNOWN_TOKEN: Invalid access token passed.",
]


def logged(form, texts=TEXTS):
    out = subprocess.run([sys.executable, "-c", SCRIPT, form, json.dumps(SECRETS)],
                         input=json.dumps(texts), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_json_lines_carry_time_level_logger_message_and_traceback():
    err = logged("json")
    lines = err.splitlines()
    assert len(lines) == len(TEXTS) + 2  # one line an event, the traceback's included
    events = [json.loads(line) for line in lines]
    for event in events:
        when = datetime.fromisoformat(event["time"])
        assert when.tzinfo is not None and when.utcoffset() is not None
        assert event["logger"] == "chanmux.plug.libera"
    assert [e["level"] for e in events] == ["WARNING"] * len(TEXTS) + ["ERROR", "INFO"]
    assert events[0]["message"] == f"server said: {TEXTS[0]}"  # \r\n kept, as JSON escapes
    assert events[2]["message"] == f"server said: {TEXTS[2]}"
    failed = events[-2]
    assert failed["message"] == "failed: x\r\ny"
    assert failed["traceback"].startswith("Traceback (most recent call last):\n")
    assert failed["traceback"].endswith("ValueError: bad line\nwith a break, token ***")
    assert "traceback" not in events[-1]
    for secret in [*SECRETS, "abcdef", "swordfish"]:
        assert secret not in err
    # nothing a terminal or a line reader takes as a break or an escape is left raw
    assert not any(c in err for c in "\r\x1b\x00\x7f\x85\u2028\u2029\x0b\x0c\x08")
    assert "café" in err


def test_json_masks_secrets_exactly_as_the_text_lines_do():
    text_lines = [line for line in logged("text").splitlines() if " WARNING " in line]
    events = [json.loads(line) for line in logged("json").splitlines()][:len(TEXTS)]
    assert len(text_lines) == len(events) == len(TEXTS)
    for line, event in zip(text_lines, events, strict=True):
        assert line.split("chanmux.plug.libera: ", 1)[1] == escape_controls(event["message"])
    assert events[3]["message"] == "server said: login with *** failed"
    assert events[7]["message"] == f"server said: {TEXTS[7]}"  # a server's words are kept


class _Lines(logging.Handler):
    def __init__(self, secrets):
        super().__init__()
        self.lines = []
        self.addFilter(secrets)
        self.setFormatter(JsonFormatter(secrets=secrets))

    def emit(self, record):
        self.lines.append(self.format(record))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_message_is_one_json_line_saying_what_was_logged(text):
    secrets = SecretFilter(SECRETS)
    handler = _Lines(secrets)
    log = logging.getLogger("test_ops_logs.property")
    log.propagate = False
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.info("said: %s", text)
    (line,) = handler.lines
    assert line.splitlines() == [line]
    assert json.loads(line)["message"] == secrets.clean(f"said: {text}")


def test_a_file_that_cannot_be_reopened_keeps_the_old_one_and_loses_nothing(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    handler = ReopenableFileHandler(str(folder / "bridge.log"), encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test_ops_logs.reopen")
    log.propagate = False
    log.handlers[:] = [handler]
    try:
        log.warning("before")
        folder.rename(tmp_path / "gone")  # the path's folder is no more
        with pytest.raises(FileNotFoundError):
            handler.reopen()
        log.warning("after")
        assert [e["message"] for e in json_lines(tmp_path / "gone" / "bridge.log")] == [
            "before", "after"]
        (tmp_path / "logs").mkdir()
        handler.reopen()
        log.warning("new")
        assert [e["message"] for e in json_lines(tmp_path / "logs" / "bridge.log")] == ["new"]
    finally:
        log.handlers[:] = []
        handler.close()


# -- SIGHUP against the real command ---------------------------------------------------------

def json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.anyio
async def test_sighup_after_rotation_opens_a_new_file_at_the_path(tmp_path, anyio_backend):
    """As logrotate does it: the file is renamed away, then SIGHUP; the new file appears at
    the configured path with the next lines, and the bridge runs on."""
    manager = Listener(tmp_path)
    log_file = tmp_path / "bridge.log"
    config = write_bridge(tmp_path, logging=f'file = "{log_file}"\nformat = "json"\n')
    try:
        async with bridge(tmp_path, config, anyio_backend, env=manager.env) as run:
            await manager.until("READY", "1")
            rotated = tmp_path / "bridge.log.1"
            log_file.rename(rotated)
            run.signal(signal.SIGHUP)
            await manager.until("RELOADING", "1")
            await manager.until("READY", "1")  # the reopening is done
            assert log_file.exists() and run.running
            assert [e["message"] for e in json_lines(log_file)] == [
                f"received SIGHUP; reopened the log file {log_file}"]
            run.signal(signal.SIGTERM)
            code = await run.wait()
    finally:
        manager.close()
    assert code == 0, run.log
    assert run.log == ""  # everything went to the file
    before = [e["message"] for e in json_lines(rotated)]
    after = [e["message"] for e in json_lines(log_file)]
    assert "lobby: connected" in before and not any("SIGHUP" in m for m in before)
    assert after[1:] == ["received SIGTERM; stopping", "lobby: closed", "stopped"]


@pytest.mark.anyio
async def test_sighup_without_a_log_file_says_so_and_the_bridge_runs_on(tmp_path, anyio_backend):
    config = write_bridge(tmp_path)
    async with bridge(tmp_path, config, anyio_backend) as run:
        await run.line("lobby: connected")
        for count in (1, 2):
            run.signal(signal.SIGHUP)
            await run.line("received SIGHUP", count=count)
        assert run.running
        run.signal(signal.SIGTERM)
        code = await run.wait()
    assert code == 0, run.log
    said = [line for line in run.log.splitlines() if "SIGHUP" in line]
    assert len(said) == 2
    assert all(line.endswith(" INFO    chanmux: received SIGHUP; there is no log file to "
                             "reopen (the log goes to standard error)") for line in said)
    assert "received SIGTERM; stopping" in run.log and "Traceback" not in run.log


@pytest.mark.anyio
async def test_sighup_while_the_plugins_load_does_not_stop_the_start(tmp_path, anyio_backend):
    """The start-up is held inside the import of a plugin package (it waits for a line on
    standard input); SIGHUP arrives there, before any event loop runs."""
    config = write_bridge(tmp_path, gate="none")
    async with bridge(tmp_path, config, anyio_backend, env={"GATE_IMPORT": "1"}) as run:
        await run.line("gate: importing, waiting for a line")
        run.signal(signal.SIGHUP)
        run.signal(signal.SIGHUP)
        await run.say()
        await run.line("lobby: connected")
        await run.line("slow: connected")
        await run.line("received SIGHUP; there is no log file to reopen")
        run.signal(signal.SIGTERM)
        code = await run.wait()
    assert code == 0, run.log
    assert run.log.count("received SIGHUP") == 1  # the two while loading, handled as one
    assert "Traceback" not in run.log


@pytest.mark.anyio
async def test_sighup_while_the_bridge_stops_does_not_cut_the_stop_short(tmp_path, anyio_backend):
    """The stop is held by a plug that finishes closing once it reads a line; SIGHUP arrives
    meanwhile and is handled there, and the stop then ends as always."""
    config = write_bridge(tmp_path, gate="close")
    async with bridge(tmp_path, config, anyio_backend) as run:
        await run.line("slow: connected")
        run.signal(signal.SIGTERM)
        await run.line("slow: waiting for a line before closing")
        run.signal(signal.SIGHUP)
        await run.line("received SIGHUP; there is no log file to reopen")
        assert run.running and "chanmux.host: stopped" not in run.log
        await run.say()
        code = await run.wait()
    assert code == 0, run.log
    lines = run.log.splitlines()
    assert lines[-1].endswith("chanmux.host: stopped")
    assert run.log.count("received SIGHUP") == 1 and "Traceback" not in run.log


# -- each load error once ----------------------------------------------------------------------

@pytest.mark.anyio
async def test_a_plugin_that_fails_to_import_is_said_once(tmp_path, anyio_backend):
    fake_dist(tmp_path, "broken-plugin", [], "import no_such_module_here\n", "broken_plugin_mod")
    config = write_bridge(tmp_path)
    env = {**os.environ, "CHANMUX_DISABLE_PLUGINS": FIRST_PARTY, "PYTHONPATH": str(tmp_path)}
    checked = subprocess.run([CHANMUX_COMMAND, "check", str(config)], capture_output=True,
                             text=True, env=env, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        "warning: plugin broken-plugin not loaded: failed to import broken_plugin_mod: "
        "ModuleNotFoundError: No module named 'no_such_module_here'"]
    async with bridge(tmp_path, config, anyio_backend) as run:
        await run.line("lobby: connected")
        run.signal(signal.SIGTERM)
        code = await run.wait()
    assert code == 0, run.log
    said = [line for line in run.log.splitlines() if "broken-plugin" in line]
    assert len(said) == 1, run.log
    assert said[0].endswith(" WARNING chanmux: plugin broken-plugin not loaded: failed to "
                            "import broken_plugin_mod: ModuleNotFoundError: No module named "
                            "'no_such_module_here'")


LAUNCHER_PROBE = """
import builtins, signal, sys
real = builtins.__import__
def probe(name, *args, **kwargs):
    if name.startswith("chanmux"):
        ignored = signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        print(f"{name}: SIGHUP ignored={ignored}", flush=True)
        sys.exit(0)
    return real(name, *args, **kwargs)
sys.argv = ["chanmux", *sys.argv[1:]]
import chanmux_launcher
builtins.__import__ = probe
chanmux_launcher.main()
"""


@pytest.mark.parametrize(("command", "ignored"), [("run", True), ("check", False)])
def test_the_console_script_ignores_sighup_before_importing_chanmux(command, ignored):
    """Importing chanmux takes about a second; the `chanmux` script (chanmux_launcher) ignores
    SIGHUP before that import for `run`, so a SIGHUP then cannot kill the start; other
    commands keep the default (a closed terminal ends them)."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER_PROBE, command, "x.toml"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"chanmux.cli: SIGHUP ignored={ignored}", out.stdout + out.stderr
