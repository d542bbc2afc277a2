"""Plugin discovery through entry points, with one-line load errors that never stop the rest."""

import subprocess
import sys
import textwrap
import types

import pytest

from chanmux import LoadError, Plug, hookimpl
from chanmux.testing import make_host, make_registry


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
    assert any(e.startswith("future-plugin: needs chanmux>=9.0 but chanmux 0.1.0 is installed")
               for e in errors), errors
    assert any(e.startswith("broken-plugin: failed to import broken_plugin_mod: "
                            "ModuleNotFoundError") for e in errors), errors
    assert all("\n" not in e for e in errors)
    assert registry.check_pending() == [
        "typo-plugin: implements 'chanmux_plug_typos', which is not a chanmux hook specification"]


def test_an_implementation_of_a_missing_spec_stops_the_host_with_one_line(plugin_dir):
    with pytest.raises(LoadError, match="typo-plugin: implements 'chanmux_plug_typos'"):
        make_host({"plugs": {"e": {"type": "echo"}}})


def test_plugins_command_lists_packages_types_specs_and_failures(plugin_dir):
    out = subprocess.run([sys.executable, "-m", "chanmux.cli", "plugins"], capture_output=True,
                         text=True, env={"PYTHONPATH": str(plugin_dir), "PATH": ""}, check=True).stdout
    assert "good-plugin 1.0" in out and "plug types: echo (good_plugin_mod.EchoPlug)" in out
    assert "future-plugin 1.0  FAILED TO LOAD: needs chanmux>=9.0" in out
    assert "broken-plugin 1.0  FAILED TO LOAD: failed to import" in out
    assert "plug types: memory" in out and "hook types: recorder" in out
    assert "hook specs: channel_is_private, channel_members" in out


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
                          "import chanmux.testing.plugin as p\n"
                          "print(sorted(p.chanmux_plug_types()))"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['memory']"
