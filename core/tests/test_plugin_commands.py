"""Subcommands plugin packages add to `chanmux` (the `chanmux_commands` spec)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chanmux.testing import run_cli

from test_registry import fake_dist

HELLO = """
    from chanmux import Command, hookimpl

    def arguments(parser):
        parser.add_argument("--name", default="world")

    def hello(args):
        print(f"hello, {args.name}")
        return 0

    @hookimpl
    def chanmux_commands():
        return [Command("hello", "say hello", run=hello, arguments=arguments),
                Command("run", "a clash with core's own command", run=hello)]
"""

AGAIN = """
    from chanmux import Command, hookimpl

    @hookimpl
    def chanmux_commands():
        return [Command("hello", "a second hello", run=lambda args: 5)]
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_dist(tmp_path, "hello-plugin", [], HELLO, "hello_plugin_mod")
    fake_dist(tmp_path, "zz-again-plugin", [], AGAIN, "zz_again_plugin_mod")
    return tmp_path


def test_a_plugin_command_runs_with_its_arguments(plugins, capsys):
    assert run_cli(["hello", "--name", "IRC"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hello, IRC\n"
    assert "warning: hello-plugin: command 'run' not added: chanmux has one of that name" in captured.err
    assert ("warning: zz-again-plugin: command 'hello' not added: hello-plugin has one of that name"
            in captured.err)


def test_help_lists_plugin_commands_and_core_commands_load_no_plugin_for_it(plugins):
    env_path = str(plugins)
    out = subprocess.run([sys.executable, "-m", "chanmux.cli", "--help"], capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": env_path, "PATH": ""})
    assert out.returncode == 0
    assert "say hello (from hello-plugin)" in " ".join(out.stdout.split())
    out = subprocess.run([sys.executable, "-m", "chanmux.cli", "init", "--help"], capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": env_path, "PATH": ""})
    assert out.returncode == 0 and "hello" not in out.stdout and out.stderr == ""


def test_an_unknown_command_names_the_commands_there_are(plugins, capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(["helo"])
    assert exited.value.code == 2
    assert "invalid choice: 'helo'" in capsys.readouterr().err


WITH_CONFIG = """
    from chanmux import Command, hookimpl

    def arguments(parser):
        parser.add_argument("--plug", default="mem")

    def show(args):
        entry = args.config.plugs[args.plug]
        print(f"{args.file}: {args.plug} is a {entry.type} plug on {entry.config.network}")
        return 0

    @hookimpl
    def chanmux_commands():
        return [Command("show-plug", "say what a plug is", run=show, arguments=arguments,
                        config=True)]
"""


@pytest.fixture
def config_command(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_dist(tmp_path, "show-plugin", [], WITH_CONFIG, "show_plugin_mod")
    return tmp_path


def test_a_command_taking_the_config_gets_it_read_and_checked(config_command, capsys):
    """`Command(config=True)`: the file is the command's first argument, read as `check`
    reads its keys; the command gets the parsed config (with ${VARIABLES} filled in)."""
    path = config_command / "bridge.toml"
    path.write_text('[plugs.mem]\ntype = "memory"\nnetwork = "${NET}"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NET", "Testnet")
        assert run_cli(["show-plug", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: mem is a memory plug on Testnet\n"


def test_a_command_taking_the_config_refuses_a_bad_one_in_one_line_per_problem(config_command, capsys):
    path = config_command / "bridge.toml"
    path.write_text('[plugs.mem]\ntype = "memory"\nechoo = true\n')
    assert run_cli(["show-plug", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert 'plugs.mem.echoo: unknown key (did you mean "echo"?)' in captured.err
    assert "Traceback" not in captured.err
    assert run_cli(["show-plug", str(config_command / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and len(err.strip().splitlines()) == 1
