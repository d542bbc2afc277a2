"""The chanmux command as a user runs it: init, check, run and stop with a signal."""

import signal
import subprocess
import sys

import anyio
import pytest

from chanmux.logs import SecretFilter

CHANMUX = [sys.executable, "-m", "chanmux.cli"]


def run(*args, **kw):
    return subprocess.run([*CHANMUX, *args], capture_output=True, text=True, **kw)


def test_init_writes_a_config_that_checks(tmp_path):
    path = tmp_path / "bridge.toml"
    out = run("init", str(path))
    assert out.returncode == 0 and path.exists()
    checked = run("check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "OK (2 plugs, 2 channels, 0 hooks" in checked.stdout
    assert run("init", str(path)).returncode == 2


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
    run("init", str(path))
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
