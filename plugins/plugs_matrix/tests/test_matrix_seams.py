"""Each helper module of chanmux-matrix works through what it is given: none imports the plug,
and none reaches for a private member (``x._name``) of anything but itself.

So a reader who opens a helper sees all it may touch in its constructor and its arguments.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import chanmux_matrix

PACKAGE = Path(chanmux_matrix.__file__).parent
#: The plug itself, the entry point and the package's front door: the modules that assemble.
OWNERS = {"plug.py", "entrypoint.py", "__init__.py"}
HELPERS = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in OWNERS)


def test_the_helpers_are_found():
    assert {"timeline.py", "incoming.py", "outgoing.py", "client.py", "positions.py",
            "rooms.py", "media.py", "appservice.py", "ghosts.py", "commands.py"} <= set(HELPERS)


def crossings(source: str) -> list[str]:
    """What in one module's source reaches past its seam, one line each."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module in ("plug", "chanmux_matrix.plug"):
                found.append((node.lineno, "imports the plug module"))
        elif isinstance(node, ast.Name) and node.id == "MatrixPlug":
            found.append((node.lineno, "names MatrixPlug"))
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append((node.lineno, f"uses private member {node.attr}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


@pytest.mark.parametrize("name", HELPERS)
def test_a_helper_touches_only_what_it_is_given(name):
    assert crossings((PACKAGE / name).read_text(encoding="utf-8")) == []


def test_the_check_sees_a_helper_that_reaches_through_its_owner():
    bad = ("from .plug import MatrixPlug\n"
           "class Helper:\n"
           "    def __init__(self, plug: MatrixPlug) -> None:\n"
           "        self.client = plug._connected()\n")
    assert crossings(bad) == ["line 1: imports the plug module", "line 3: names MatrixPlug",
                              "line 4: uses private member _connected"]
