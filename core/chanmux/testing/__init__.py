"""chanmux's test kit: an in-memory plug, a recording hook, host fixtures and the plug
contract suite that any plug package runs against itself, and `run_cli` to test what the
`chanmux` command says about a plugin's config. Also a pytest plugin (fixture
``chanmux_host``).

The memory plug and the recorder are plugin types of core itself, so they load without
pytest; the contract suite (which needs pytest) is imported only when asked for.
"""

from collections.abc import Sequence
from typing import Any

from .fixtures import make_host, make_registry, run_host
from .memory import MemoryConfig, MemoryPlug
from .recorder import Received, RecorderHook


def run_cli(args: Sequence[str]) -> int:
    """Run the `chanmux` command line in this process, as `chanmux ARGS...` would (e.g.
    `run_cli(["check", str(path)])`), and return its exit status; what it prints goes to
    `sys.stdout` and `sys.stderr`, where pytest's `capsys` reads it."""
    from ..cli import main

    return main(list(args))


_CONTRACT = {"ContractEnv", "ContractTimeout", "PlugContract", "Seen"}


def __getattr__(name: str) -> Any:
    if name in _CONTRACT:
        from . import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'chanmux.testing' has no attribute {name!r}")


__all__ = ["ContractEnv", "ContractTimeout", "MemoryConfig", "MemoryPlug", "PlugContract",
           "Received", "RecorderHook", "Seen", "make_host", "make_registry", "run_cli",
           "run_host"]
