"""chanmux: a host that bridges chat networks through plugins.

The public API: the message model, the Plug and Hook base classes, the hook specification
markers, config errors, the Host and its Store. Plugins import only what is exported here.
"""

__version__ = "0.1.0"

from .caller import HookCaller, NoOwner  # noqa: E402
from .config import Config, ConfigError  # noqa: E402
from .delivery import Hold  # noqa: E402
from .errors import ActionRequired, Refused, TryLater  # noqa: E402
from .hookspecs import hookimpl, hookspec  # noqa: E402
from .host import Host, HostStopped  # noqa: E402
from .model import (  # noqa: E402
    Channel,
    File,
    FileKind,
    Location,
    Message,
    Receipt,
    SentMessage,
    User,
    unique_id,
)
from .naming import NameFormat  # noqa: E402
from .plug import Capabilities, Hook, NoConfig, Plug, State  # noqa: E402
from .plugins import LoadError, Registry, load_registry  # noqa: E402
from .queue import Delivery, DeliveryQueue, DeliveryQueues  # noqa: E402
from .richtext import RichText, Segment  # noqa: E402
from .store import BatchWriter, DatabaseUnusable, Store  # noqa: E402
from . import validators  # noqa: E402

__all__ = [
    "ActionRequired", "BatchWriter", "Capabilities", "Channel", "Config", "ConfigError", "DatabaseUnusable", "Delivery", "DeliveryQueue",
    "DeliveryQueues", "File", "FileKind",
    "Hold", "Hook", "HookCaller", "Host", "HostStopped", "LoadError", "Location", "Message", "NameFormat", "NoConfig", "NoOwner",
    "Plug", "Receipt", "Refused", "Registry", "RichText", "Segment", "SentMessage", "State", "Store",
    "TryLater", "User", "__version__", "hookimpl", "hookspec", "load_registry", "unique_id", "validators",
]
