"""Every example config the plugin packages ship (`chanmux init --example` lists them) passes
`chanmux check` (the environment variables it names
set to dummies). No network is involved, so no anyio backend either."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(ROOT.glob("plugins/*/chanmux_*/examples/*.toml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_check(example: Path, tmp_path: Path):
    text = example.read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIBERA_", "MATRIX_"))}
    env.update({name: f"dummy-{name.lower()}" for name in names})
    # A copy in a folder of our own: the default database is a SQLite file beside the config.
    config = tmp_path / example.name
    config.write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "chanmux.cli", "check", str(config)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{config}: OK" in result.stdout, result.stdout
    assert "error" not in result.stderr.lower(), result.stderr
    for name in names:  # secrets from the environment never show
        assert f"dummy-{name.lower()}" not in result.stdout + result.stderr


def test_check_needs_the_environment(tmp_path: Path):
    """Without the variables an example names, `check` fails and names them (so the dummies
    above are what made it pass)."""
    example = next(p for p in EXAMPLES if "${" in p.read_text(encoding="utf-8"))
    config = tmp_path / example.name
    config.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIBERA_", "MATRIX_"))}
    result = subprocess.run([sys.executable, "-m", "chanmux.cli", "check", str(config)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", example.read_text(encoding="utf-8")))
    assert any(name in result.stderr for name in names), result.stderr
