"""Every hook specification is documented and has a test that names it."""

import inspect
import re
from pathlib import Path

import pytest

from chanmux import hookspecs

SPECS = hookspecs.spec_functions()
TESTS = "\n".join(p.read_text() for p in Path(__file__).parent.glob("*.py")
                  if p.name != Path(__file__).name)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_documented(name):
    doc = inspect.getdoc(SPECS[name]) or ""
    assert len(doc) > 60, f"hook spec {name} needs a docstring saying what it does"
    assert re.search(r"Since \d+\.\d+", doc), f"hook spec {name}: say since which version"
    assert any(w in doc for w in ("Sync", "Async")), f"hook spec {name}: say sync or async"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_has_a_test(name):
    assert re.search(rf"(?<![A-Za-z]){name}(?![A-Za-z])", TESTS), f"no test names hook spec {name}"


def test_spec_kinds_are_known():
    assert {f.chanmux_call for f in SPECS.values()} <= {"register", "fanout", "chain", "owner"}
    for name, fn in SPECS.items():
        if fn.chanmux_call == "register":
            assert not inspect.iscoroutinefunction(fn), name
        else:
            assert inspect.iscoroutinefunction(fn), name
