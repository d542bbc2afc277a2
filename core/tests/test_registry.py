"""Plugin discovery through entry points, with one-line load errors that never stop the rest."""

import os
import subprocess
import sys
import textwrap
import types

import pytest

from chanmux import LoadError, Plug, __version__, hookimpl
from chanmux.testing import make_host, make_registry

CHANMUX_COMMAND = os.path.join(os.path.dirname(sys.executable), "chanmux")


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


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_dist(tmp_path, "good-plugin", ["chanmux>=0.1"], GOOD, "good_plugin_mod")
    fake_dist(tmp_path, "future-plugin", ["chanmux>=9.0"], GOOD.replace("echo", "future"),
              "future_plugin_mod")
    fake_dist(tmp_path, "broken-plugin", [], "import no_such_module_here\n", "broken_plugin_mod")
    fake_dist(tmp_path, "typo-plugin", [], """
        from chanmux import hookimpl

        @hookimpl
        def chanmux_plug_typos():
            return {}
    """, "typo_plugin_mod")
    return tmp_path


def test_plugins_load_and_failures_are_one_line_each(plugin_dir):
    registry = make_registry()
    assert "echo" in registry.plug_types
    assert "future" not in registry.plug_types
    errors = registry.errors
    assert f"future-plugin: needs chanmux>=9.0 but chanmux {__version__} is installed" in errors
    assert any(e.startswith("broken-plugin: failed to import broken_plugin_mod: "
                            "ModuleNotFoundError") for e in errors), errors
    assert all("\n" not in e for e in errors)
    assert registry.check_pending() == [
        "typo-plugin: implements 'chanmux_plug_typos', which is not a chanmux hook specification"]


def test_an_implementation_of_a_missing_spec_stops_the_host_with_one_line(plugin_dir):
    with pytest.raises(LoadError, match="typo-plugin: implements 'chanmux_plug_typos'"):
        make_host({"plugs": {"e": {"type": "echo"}}})


def test_make_host_leaves_out_what_the_config_disables(plugin_dir):
    """`make_host` reads `[plugins] disable` as `chanmux run` does: a disabled plugin is not
    imported, so its mistakes do not stop the host."""
    host = make_host({"plugins": {"disable": ["typo-plugin", "broken-plugin"]},
                      "plugs": {"e": {"type": "echo"}}})
    assert type(host.plugs["e"]).__name__ == "EchoPlug"
    assert "broken_plugin_mod" not in sys.modules


def plugins_command(plugin_dir, **env):
    return subprocess.run([CHANMUX_COMMAND, "plugins"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(plugin_dir), "PATH": "", **env})


def test_plugins_command_lists_packages_types_specs_and_failures_once(plugin_dir):
    out = plugins_command(plugin_dir)
    assert out.returncode == 1, out.stderr
    text = out.stdout + out.stderr
    assert "good-plugin 1.0" in out.stdout and "plug types: echo (good_plugin_mod.EchoPlug)" in out.stdout
    assert (f"future-plugin 1.0  REFUSED: needs chanmux>=9.0 but chanmux {__version__} is installed"
            in out.stdout)
    assert "broken-plugin 1.0  FAILED TO LOAD: failed to import" in out.stdout
    assert text.count("needs chanmux>=9.0") == 1 and text.count("no_such_module_here") == 1
    assert out.stderr.strip().endswith("2 plugin packages failed to load: broken-plugin, future-plugin")
    production, kit = out.stdout.split("\ntest kit (")
    assert "memory" not in production and "recorder" not in production
    assert "  plug types: memory" in kit and "  hook types: recorder" in kit
    assert "hook specs: channel_is_private, channel_members" in kit


def test_plugins_command_exits_0_when_every_plugin_loads(plugin_dir):
    out = plugins_command(plugin_dir, CHANMUX_DISABLE_PLUGINS="future-plugin,broken-plugin")
    assert out.returncode == 0, out.stderr
    assert "future-plugin 1.0  DISABLED (CHANMUX_DISABLE_PLUGINS)" in out.stdout
    assert "broken-plugin 1.0  DISABLED (CHANMUX_DISABLE_PLUGINS)" in out.stdout
    assert "no_such_module_here" not in out.stdout + out.stderr  # a disabled plugin is not imported
    assert out.stderr == ""


def test_a_misspelt_name_in_the_environment_is_a_warning(plugin_dir):
    out = plugins_command(plugin_dir, CHANMUX_DISABLE_PLUGINS="good-plugn")
    assert ("warning: CHANMUX_DISABLE_PLUGINS names 'good-plugn', which is not an installed "
            "plugin package") in out.stderr
    assert "good-plugin 1.0  (good_plugin_mod)" in out.stdout


def test_two_distributions_cannot_claim_one_type_name():
    class Other(Plug):
        pass

    mod = types.ModuleType("dup")
    mod.chanmux_plug_types = hookimpl(lambda: {"memory": Other})
    registry = make_registry([("dup-plugin", mod)])
    assert registry.plug_types["memory"].__name__ == "MemoryPlug"
    assert "dup-plugin: plug type 'memory' is also provided by chanmux" in registry.errors


def test_a_plug_and_a_hook_cannot_share_a_name():
    with pytest.raises(Exception, match='the name "x" is already used by a plug'):
        make_host({"plugs": {"x": {"type": "memory"}}, "hooks": {"x": {"type": "recorder"}}})


def test_core_plugin_types_load_without_pytest():
    """A production install has no pytest: the memory plug and recorder must still load."""
    out = subprocess.run([sys.executable, "-c",
                          "import sys; sys.modules['pytest'] = None\n"
                          "import chanmux.testing.entrypoint as p\n"
                          "print(sorted(p.chanmux_plug_types()))"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['memory']"


STARTER = '''
    from pathlib import Path
    from chanmux import Plug, hookimpl

    class EchoPlug(Plug):
        pass

    @hookimpl
    def chanmux_plug_types():
        return {"echo": EchoPlug}

    @hookimpl
    def chanmux_starter(channels):
        return ('# the echo network\\n[plugs.echo]\\ntype = "echo"\\n\\n'
                '[channels.room]\\nplug = "echo"\\nsource = "#room"\\n')

    @hookimpl
    def chanmux_examples():
        return {"echo-only": Path(__file__).with_name("echo-only.toml")}
'''


def test_a_plugins_starter_section_and_example_are_what_init_writes(tmp_path):
    """chanmux_starter and chanmux_examples, with core and one third-party plugin alone."""
    fake_dist(tmp_path, "echo-plugin", [f"chanmux>={__version__}"], STARTER, "echo_plugin_mod")
    (tmp_path / "echo-only.toml").write_text('# Just the echo network.\n[plugs.echo]\ntype = "echo"\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path),
           "CHANMUX_DISABLE_PLUGINS": "chanmux-irc,chanmux-matrix,chanmux-sync,chanmux-forward"}
    path = tmp_path / "bridge.toml"
    out = subprocess.run([CHANMUX_COMMAND, "init", str(path)], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr
    text = path.read_text()
    assert '[plugs.echo]\ntype = "echo"' in text and 'type = "memory"' not in text
    listed = subprocess.run([CHANMUX_COMMAND, "init", "--example"], capture_output=True,
                            text=True, env=env)
    assert "echo-only" in listed.stdout and "Just the echo network." in listed.stdout
    example = tmp_path / "copy.toml"
    written = subprocess.run([CHANMUX_COMMAND, "init", "--example", "echo-only", str(example)],
                             capture_output=True, text=True, env=env)
    assert written.returncode == 0, written.stderr
    assert example.read_text().startswith("# Just the echo network.")


def test_a_misspelt_spec_method_is_a_warning_at_load(caplog):
    """`on_recieve` would silently never be called: the host says so when it loads the hook."""
    from chanmux import Hook

    class Typo(Hook):
        async def on_recieve(self, sent, source, primary):
            pass

        async def helper_method(self):  # not like any spec: no warning
            pass

    module = types.ModuleType("typo_hooks")
    module.chanmux_hook_types = hookimpl(lambda: {"typo": Typo})
    caplog.set_level("WARNING")
    make_host({"hooks": {"t": {"type": "typo"}}}, modules=[("typo-hooks", module)])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["hooks.t: Typo.on_recieve is not a chanmux hook specification, so it is "
                        "never called; did you mean on_receive?"]
