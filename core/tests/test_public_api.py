"""The public API is what `chanmux` and `chanmux.testing` export, and it is enforced.

A plugin package in this repository (its code under plugins/*/chanmux_*/ and its tests under
plugins/*/tests/) imports from chanmux only names in `chanmux.__all__` or
`chanmux.testing.__all__`, and reaches no private attribute (leading `_`) of a core object.
Tests are held to it too: they ship in the sdist and run in the tox matrix against other core
releases, where a private name of HEAD's core may not exist. Every exported name exists and
is documented in core/API.md with the version it appeared in, and the page lists nothing else.

The checks read the source with `ast`; they need the repository around core/, and fail
saying so when plugins/ is not beside it.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import chanmux
import chanmux.testing

CORE = Path(__file__).resolve().parents[1]
REPO = CORE.parent
API_PAGE = CORE / "API.md"

#: What `chanmux` and `chanmux.testing` exported in 0.1.0 (commit 6f5b26f,
#: `git show 6f5b26f:core/chanmux/__init__.py`): documented as "since 0.1.0".
RELEASED_0_1_0 = {
    "chanmux": {
        "BatchWriter", "Capabilities", "Channel", "Config", "ConfigError", "File", "FileKind",
        "Hook", "HookCaller", "Host", "HostStopped", "LoadError", "Location", "Message",
        "NameFormat", "NoConfig", "NoOwner", "Plug", "Receipt", "Registry", "RichText",
        "Segment", "SentMessage", "State", "Store", "User", "__version__", "hookimpl",
        "hookspec", "load_registry", "unique_id",
    },
    "chanmux.testing": {
        "ContractEnv", "MemoryConfig", "MemoryPlug", "PlugContract", "Received",
        "RecorderHook", "Seen", "make_host", "make_registry", "run_host",
    },
}

PUBLIC = {"chanmux": chanmux, "chanmux.testing": chanmux.testing}


# -- reading a plugin package --------------------------------------------------------------


def plugin_packages(root: Path) -> dict[str, list[Path]]:
    """Each plugin folder under `root`/plugins with its Python files (code and tests)."""
    plugins = root / "plugins"
    found: dict[str, list[Path]] = {}
    if plugins.is_dir():
        for folder in sorted(p for p in plugins.iterdir() if p.is_dir()):
            packages = [p for p in folder.glob("chanmux_*") if (p / "__init__.py").is_file()]
            if not packages:
                continue
            files = [f for pkg in packages for f in pkg.rglob("*.py")]
            files += list((folder / "tests").rglob("*.py"))
            found[folder.name] = sorted(files)
    return found


def is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def is_private(name: str) -> bool:
    return name.startswith("_") and not is_dunder(name)


def defined_private(trees: Iterable[ast.AST]) -> set[str]:
    """Private names these modules define for themselves: functions, classes, module and
    class attributes, attributes set on `self`/`cls`, `__slots__` entries."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for sub in ast.walk(target):
                        if isinstance(sub, ast.Name):
                            names.add(sub.id)
                        elif (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                              and sub.value.id in ("self", "cls")):
                            names.add(sub.attr)
                        if (isinstance(sub, ast.Name) and sub.id == "__slots__"
                                and isinstance(node, ast.Assign)):
                            for const in ast.walk(node.value):
                                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                                    names.add(const.value)
    return {n for n in names if is_private(n)}


def core_private() -> dict[str, str]:
    """Every private name core defines, with the first module (relative path) defining it."""
    where: dict[str, str] = {}
    for path in sorted((CORE / "chanmux").rglob("*.py")):
        for name in defined_private([ast.parse(path.read_text(encoding="utf-8"))]):
            where.setdefault(name, str(path.relative_to(CORE)))
    return where


def exported(module: str) -> set[str]:
    return set(PUBLIC[module].__all__)


def problems_in(root: Path) -> list[str]:
    """One line per use of chanmux outside its public API in the plugin packages at `root`."""
    core_names = core_private()
    modules_by_name = {name: mod for name in exported("chanmux")
                       if isinstance(mod := getattr(chanmux, name), types.ModuleType)}
    found: list[str] = []
    for files in plugin_packages(root).values():
        trees = {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in files}
        own = defined_private(trees.values())
        for path, tree in trees.items():
            where = path.relative_to(root)
            found.extend(f"{where}:{line}: {text}"
                         for line, text in check_module(tree, core_names, own, modules_by_name))
    return found


def check_module(tree: ast.AST, core_names: dict[str, str], own: set[str],
                 modules_by_name: dict[str, types.ModuleType]) -> Iterator[tuple[int, str]]:
    # names bound in this module to `chanmux`, `chanmux.testing` or an exported core module
    bound: dict[str, tuple[str, set[str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top != "chanmux":
                    continue
                if alias.name not in PUBLIC:
                    yield node.lineno, (f"imports {alias.name}, which is not public: use only "
                                        f"what chanmux and chanmux.testing export (core/API.md)")
                elif alias.asname:
                    bound[alias.asname] = (alias.name, exported(alias.name))
                else:
                    bound["chanmux"] = ("chanmux", exported("chanmux"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module.split(".")[0] != "chanmux":
                continue
            names = [a.name for a in node.names]
            if module not in PUBLIC:
                public = [n for n in names if n in exported("chanmux")]
                hint = (f"; import {', '.join(public)} from chanmux, which exports "
                        f"{'it' if len(public) == 1 else 'them'}") if public else ""
                yield node.lineno, (f"imports {', '.join(names)} from {module}, a module that "
                                    f"is not public API{hint}")
                continue
            for alias in node.names:
                if alias.name not in exported(module):
                    yield node.lineno, (f"imports {alias.name} from {module}, which does not "
                                        f"export it (not in {module}.__all__; core/API.md)")
                elif alias.name in modules_by_name:
                    mod = modules_by_name[alias.name]
                    bound[alias.asname or alias.name] = (
                        f"chanmux.{alias.name}",
                        set(getattr(mod, "__all__", [n for n in vars(mod) if not n.startswith("_")])))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in bound:
            module, names = bound[value.id]
            if node.attr not in names and not is_dunder(node.attr):
                yield node.lineno, f"uses {module}.{node.attr}, which {module} does not export"
            continue
        if is_private(node.attr) and node.attr in core_names and node.attr not in own:
            yield node.lineno, (f"reaches {ast.unparse(node)}, a private attribute of core "
                                f"(defined in {core_names[node.attr]}): use the public API, "
                                f"or give core a public way to do it")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            name = node.args[1].value
            if is_private(name) and name in core_names and name not in own:
                yield node.lineno, (f"reaches {name} with {node.func.id}, a private attribute "
                                    f"of core (defined in {core_names[name]})")


def repository() -> Path:
    if not (REPO / "plugins").is_dir() or not plugin_packages(REPO):
        pytest.fail(f"the plugin packages are not beside core: no plugins/*/chanmux_* under "
                    f"{REPO}; run this test from a checkout of the whole chanmux repository")
    return REPO


# -- the plugin packages use only the public API ---------------------------------------------


def test_the_plugin_packages_of_this_repository_are_checked():
    assert set(plugin_packages(repository())) >= {"forward", "plugs_irc", "plugs_matrix", "sync"}


def test_plugin_packages_use_only_the_public_api():
    problems = problems_in(repository())
    assert not problems, ("plugin packages use chanmux outside its public API:\n  "
                          + "\n  ".join(problems))


def write_plugin(root: Path, code: str, test: str = "") -> None:
    package = root / "plugins" / "echo" / "chanmux_echo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(code)
    (root / "plugins" / "echo" / "tests").mkdir()
    (root / "plugins" / "echo" / "tests" / "test_echo.py").write_text(test)


@pytest.mark.parametrize(("code", "problem"), [
    ("from chanmux.delivery import Tracker\n",
     "chanmux_echo/__init__.py:1: imports Tracker from chanmux.delivery, a module that is not "
     "public API; import Tracker from chanmux, which exports it"),
    ("from chanmux.lanes import Lanes\n",
     "chanmux_echo/__init__.py:1: imports Lanes from chanmux.lanes, a module that is not public "
     "API"),
    ("from chanmux import Registry\n",
     "chanmux_echo/__init__.py:1: imports Registry from chanmux, which does not export it "
     "(not in chanmux.__all__; core/API.md)"),
    ("import chanmux.host\n",
     "chanmux_echo/__init__.py:1: imports chanmux.host, which is not public: use only what "
     "chanmux and chanmux.testing export (core/API.md)"),
    ("import chanmux\n\nx = chanmux.HookCaller\n",
     "chanmux_echo/__init__.py:3: uses chanmux.HookCaller, which chanmux does not export"),
    ("from chanmux import codec\n\nx = codec._dump_user\n",
     "chanmux_echo/__init__.py:3: uses chanmux.codec._dump_user, which chanmux.codec does not "
     "export"),
    ("def f(host):\n    return host._echoes\n",
     "chanmux_echo/__init__.py:2: reaches host._echoes, a private attribute of core (defined in "
     "chanmux/host.py): use the public API, or give core a public way to do it"),
    ("def f(writer):\n    return getattr(writer, '_pending')\n",
     "chanmux_echo/__init__.py:2: reaches _pending with getattr, a private attribute of core "
     "(defined in chanmux/store.py)"),
])
def test_a_plugin_using_what_core_does_not_export_fails_with_the_place_and_the_way_out(
        tmp_path, code, problem):
    write_plugin(tmp_path, code)
    assert problems_in(tmp_path) == [f"plugins/echo/{problem}"]


def test_a_plugin_may_use_its_own_private_names_and_everything_exported(tmp_path):
    write_plugin(tmp_path, (
        "import chanmux\n"
        "from chanmux import Plug, Tracker, codec, validators\n"
        "from chanmux.testing import MemoryPlug\n\n"
        "class EchoPlug(Plug):\n"
        "    __slots__ = ('_echoes',)\n\n"
        "    def __init__(self, *args):\n"
        "        super().__init__(*args)\n"
        "        self._pending = []\n\n"
        "def f(other):\n"
        "    return other._pending, other._echoes, chanmux.Hold, codec.dump, validators.port\n"),
        test="from chanmux.testing import run_host, PlugContract\nimport chanmux.testing\n")
    assert problems_in(tmp_path) == []


def test_tests_of_a_plugin_are_held_to_the_public_api_too(tmp_path):
    write_plugin(tmp_path, "", test="from chanmux.config import parse\n")
    assert problems_in(tmp_path) == [
        "plugins/echo/tests/test_echo.py:1: imports parse from chanmux.config, a module that is "
        "not public API"]


# -- what is exported exists, and is documented ----------------------------------------------


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_exported_name_exists(module):
    mod = PUBLIC[module]
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what {module} does not have: {missing}"
    assert len(mod.__all__) == len(set(mod.__all__)), f"{module}.__all__ has duplicates"


def test_chanmux_has_no_public_name_it_does_not_export():
    """What `from chanmux import X` finds is what __all__ says (submodules aside)."""
    extra = sorted(name for name, value in vars(chanmux).items()
                   if not name.startswith("_") and name not in chanmux.__all__
                   and not isinstance(value, types.ModuleType))
    assert not extra, f"chanmux has public names missing from __all__: {extra}"


def test_the_version_is_kept_in_its_own_module():
    from chanmux import _version

    assert chanmux.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", chanmux.__version__)


ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]*?)\s*\|\s*(.*?)\s*\|\s*$")


def documented() -> dict[str, dict[str, tuple[str, str]]]:
    """The reference page's table rows per module section: name -> (since, what it is)."""
    if not API_PAGE.is_file():
        pytest.fail(f"the public API reference page is missing: {API_PAGE}")
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for number, line in enumerate(API_PAGE.read_text(encoding="utf-8").splitlines(), 1):
        heading = re.match(r"^## `([\w.]+)`\s*$", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
            continue
        if line.startswith("## "):
            current = None
        row = ROW.match(line)
        if row and current is not None and row.group(1) != "name":
            name, since, what = row.groups()
            assert name not in current, f"API.md:{number}: {name} is listed twice"
            current[name] = (since, what)
    return sections


def test_the_reference_page_documents_exactly_what_is_exported():
    sections = documented()
    assert set(sections) == set(PUBLIC), (
        f"API.md has sections for {sorted(sections)}, the public modules are {sorted(PUBLIC)}")
    for module, rows in sections.items():
        names = exported(module)
        undocumented = sorted(names - set(rows))
        unexported = sorted(set(rows) - names)
        assert not undocumented, f"API.md does not document {module}: {undocumented}"
        assert not unexported, f"API.md lists what {module} does not export: {unexported}"


def test_each_documented_name_says_what_it_is_and_since_which_version():
    for module, rows in documented().items():
        for name, (since, what) in rows.items():
            assert len(what.split()) >= 4, f"API.md: {module}.{name} needs a sentence saying what it is"
            version = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", since)
            assert version, f"API.md: {module}.{name}: since {since!r} is not a version"
            if name in RELEASED_0_1_0[module]:
                assert since == "0.1.0", f"API.md: {module}.{name} was exported in 0.1.0, not {since}"
            else:
                assert tuple(map(int, version.groups())) > (0, 1, 0), (
                    f"API.md: {module}.{name} did not exist in 0.1.0; it is since a later release")
