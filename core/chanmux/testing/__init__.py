"""chanmux's test kit: an in-memory plug, a recording hook, host fixtures and the plug
contract suite that any plug package runs against itself. Also a pytest plugin (fixtures
``chanmux_host`` and ``memory_config``)."""

from .contract import ContractEnv, PlugContract, Seen
from .fixtures import make_host, make_registry, run_host
from .memory import MemoryConfig, MemoryPlug
from .recorder import Received, RecorderHook

__all__ = ["ContractEnv", "MemoryConfig", "MemoryPlug", "PlugContract", "Received",
           "RecorderHook", "Seen", "make_host", "make_registry", "run_host"]
