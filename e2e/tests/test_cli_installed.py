"""The command line with every first-party plugin installed: the starter `chanmux init`
writes from them, the examples they ship, `--version`, and a refused or disabled plugin
named by `check` and `plugins`. (core's own tests run with core alone.)"""

import os
import subprocess
import sys
import textwrap

from chanmux import __version__

CHANMUX = [sys.executable, "-m", "chanmux.cli"]
#: The installed console script, as a user runs it.
CHANMUX_COMMAND = os.path.join(os.path.dirname(sys.executable), "chanmux")

FIRST_PARTY = "chanmux-irc,chanmux-matrix,chanmux-sync,chanmux-forward"
#: As if only core were installed: every first-party plugin disabled.
CORE_ONLY = {**os.environ, "CHANMUX_DISABLE_PLUGINS": FIRST_PARTY}


def run(*args, **kw):
    return subprocess.run([*CHANMUX, *args], capture_output=True, text=True, **kw)


def test_init_with_only_core_writes_the_memory_starter_that_checks(tmp_path):
    path = tmp_path / "bridge.toml"
    out = run("init", str(path), env=CORE_ONLY)
    assert out.returncode == 0 and path.exists()
    text = path.read_text()
    assert "No network plug package (chanmux-irc, chanmux-matrix) is installed" in text
    assert ("#   chanmux-irc: IRC networks (installed but disabled by CHANMUX_DISABLE_PLUGINS)"
            in text)
    checked = run("check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "OK (2 plugs, 2 channels, 0 hooks" in checked.stdout
    assert run("init", str(path)).returncode == 2


def test_init_writes_a_starter_for_the_installed_plugins(tmp_path):
    """Each plugin's chanmux_starter section: the plugs' first, then sync's linking them."""
    path = tmp_path / "bridge.toml"
    out = run("init", str(path))
    assert out.returncode == 0, out.stderr
    assert "it reads MATRIX_TOKEN from the environment" in out.stdout
    text = path.read_text()
    assert 'type = "irc"' in text and 'type = "matrix"' in text and 'type = "sync"' in text
    assert 'myproject = ["irc", "matrix"]' in text
    assert 'type = "memory"' not in text
    without = run("check", str(path), env={k: v for k, v in os.environ.items() if k != "MATRIX_TOKEN"})
    assert "environment variable MATRIX_TOKEN is not set" in without.stderr
    checked = run("check", str(path), env={**os.environ, "MATRIX_TOKEN": "x"})
    assert checked.returncode == 0, checked.stderr
    assert "OK (2 plugs, 2 channels, 1 hooks" in checked.stdout


def test_init_with_irc_only_links_nothing_and_says_how(tmp_path):
    path = tmp_path / "bridge.toml"
    env = {**os.environ, "CHANMUX_DISABLE_PLUGINS": "chanmux-matrix"}
    assert run("init", str(path), env=env).returncode == 0
    text = path.read_text()
    assert 'type = "irc"' in text and "\n[hooks.sync]" not in text and "# [hooks.sync]" in text
    assert "#   chanmux-matrix: Matrix rooms (installed but disabled by CHANMUX_DISABLE_PLUGINS)" in text
    assert run("check", str(path), env=env).returncode == 0


def test_examples_are_listed_and_written_and_each_passes_check(tmp_path):
    """The examples the plugins ship through chanmux_examples."""
    listed = run("init", "--example")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == ["announcements", "irc-matrix", "libera-sasl", "three-way"]
    assert "One IRC channel <-> one Matrix room.  (chanmux-sync)" in listed.stdout
    env = {**os.environ, "MATRIX_TOKEN": "t", "MATRIX_PASSWORD": "p", "LIBERA_PASSWORD": "l"}
    for name in names:
        path = tmp_path / f"{name}-copy.toml"
        out = run("init", "--example", name, str(path))
        assert out.returncode == 0, out.stderr
        checked = run("check", str(path), env=env)
        assert checked.returncode == 0 and f"{path}: OK" in checked.stdout, checked.stderr
    default = run("init", "--example", "irc-matrix", cwd=tmp_path)
    assert default.returncode == 0 and (tmp_path / "irc-matrix.toml").exists()
    bad = run("init", "--example", "irc-matrx", str(tmp_path / "x.toml"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: no example named 'irc-matrx' (examples: announcements, "
                                  "irc-matrix, libera-sasl, three-way; `chanmux init --example` "
                                  "lists them)")


def test_an_example_whose_plugins_are_missing_says_which(tmp_path):
    env = {**os.environ, "CHANMUX_DISABLE_PLUGINS": "chanmux-matrix"}
    listed = run("init", "--example", env=env)
    assert "irc-matrix       One IRC channel <-> one Matrix room.  (chanmux-sync; needs " \
           "chanmux-matrix, not installed)" in listed.stdout
    out = run("init", "--example", "irc-matrix", str(tmp_path / "b.toml"), env=env)
    assert out.returncode == 0
    assert out.stderr.strip() == "warning: this example needs chanmux-matrix, not installed"


def test_version_lists_every_installed_chanmux_package():
    out = subprocess.run([CHANMUX_COMMAND, "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"chanmux {__version__}"
    assert [line.split()[0] for line in lines[1:]] == [
        "chanmux-forward", "chanmux-irc", "chanmux-matrix", "chanmux-sync"]
    module = subprocess.run([sys.executable, "-m", "chanmux", "--version"], capture_output=True,
                            text=True)
    assert module.returncode == 0 and module.stdout == out.stdout


def test_each_package_says_the_version_it_was_installed_as():
    """`chanmux_irc.__version__` and the others agree with the installed metadata (0.2.0 of
    every plugin still said 0.1.0)."""
    import importlib
    from importlib.metadata import version

    for dist in ["chanmux", *FIRST_PARTY.split(",")]:
        module = importlib.import_module(dist.replace("-", "_"))
        assert module.__version__ == version(dist), dist


def fake_dist(root, name, requires, module_source, module_name):
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires))
    (info / "entry_points.txt").write_text(f"[chanmux.plugins]\n{name} = {module_name}\n")
    (root / f"{module_name}.py").write_text(textwrap.dedent(module_source))


GOOD = """
    from chanmux import Plug, hookimpl

    class EchoPlug(Plug):
        pass

    @hookimpl
    def chanmux_plug_types():
        return {"echo": EchoPlug}
"""



def test_check_says_a_refused_plugin_is_installed_and_why(tmp_path):
    """A chanmux-irc made for another core: check names the range and the installed core."""
    fake_dist(tmp_path, "chanmux-irc", [f"chanmux>=0.{int(__version__.split('.')[1]) + 5},<1"],
              GOOD.replace("echo", "irc"), "fake_irc_mod")
    path = tmp_path / "bridge.toml"
    path.write_text('[plugs.libera]\ntype = "irc"\n')
    env = {"PYTHONPATH": str(tmp_path), "PATH": ""}
    # the real chanmux-irc is installed too: hide it so that only the refused one is found
    env["PYTHONPATH"] += os.pathsep + str(_hide(tmp_path, "chanmux_irc"))
    out = subprocess.run([CHANMUX_COMMAND, "check", str(path)], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    spec = f"<1,>=0.{int(__version__.split('.')[1]) + 5}"
    assert lines[0] == (f'error: {path}: plugs.libera.type: unknown plug type "irc" — installed '
                        "plug types: matrix, memory; chanmux-irc is installed but was refused: "
                        f"needs chanmux{spec} but chanmux {__version__} is installed")


def _hide(root, module):
    """A sitecustomize that drops the installed distribution of `module` from the search."""
    shim = root / "hide"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import importlib.metadata as md, sys
        _orig = md.entry_points
        def entry_points(**kw):
            eps = _orig(**kw)
            return md.EntryPoints(e for e in eps if not (e.value.startswith("{module}.")
                                                         and e.dist and e.dist.version != "1.0"))
        md.entry_points = entry_points
    """))
    return shim


def test_a_disabled_plugin_is_not_loaded_and_a_config_using_it_says_so(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[plugins]\ndisable = ["chanmux-irc"]\n\n[plugs.libera]\ntype = "irc"\n'
                    'server = "irc.example.org"\nnick = "b"\n')
    out = subprocess.run([CHANMUX_COMMAND, "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f'error: {path}: plugs.libera.type: unknown plug type "irc" — installed plug types: '
        f"matrix, memory; chanmux-irc is installed but disabled (plugins.disable in {path})")
    env = {**os.environ, "CHANMUX_DISABLE_PLUGINS": "chanmux-irc"}
    path.write_text(path.read_text().replace('disable = ["chanmux-irc"]', ""))
    out = subprocess.run([CHANMUX_COMMAND, "check", str(path)], capture_output=True, text=True,
                         env=env)
    assert out.stderr.strip().endswith("chanmux-irc is installed but disabled "
                                       "(CHANMUX_DISABLE_PLUGINS)")
    listed = subprocess.run([CHANMUX_COMMAND, "plugins"], capture_output=True, text=True, env=env)
    assert "chanmux-irc " in listed.stdout and "DISABLED (CHANMUX_DISABLE_PLUGINS)" in listed.stdout
    assert "plug types: irc" not in listed.stdout


def test_plugins_disable_is_checked_like_every_key(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[plugins]\ndisable = ["chanmux-ircc", 3]\ndisabled = true\n')
    out = subprocess.run([CHANMUX_COMMAND, "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "plugins.disable[1]: expected a string, got 3" in out.stderr
    assert 'plugins.disabled: unknown key (did you mean "disable"?)' in out.stderr
    path.write_text('[plugins]\ndisable = ["chanmux-ircc"]\n')
    out = subprocess.run([CHANMUX_COMMAND, "check", str(path)], capture_output=True, text=True)
    assert out.stderr.strip() == (f'error: {path}: plugins.disable[0]: no plugin package '
                                  '"chanmux-ircc" is installed (did you mean "chanmux-irc"?)')

