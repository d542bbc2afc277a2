"""chanmux: a host that bridges chat networks through plugins.

The public API: what a plug or hook package may use, and nothing else. `__all__` lists it and
`API.md` (shipped with core) says what each name is and since which version; a test fails when
a first-party plugin imports anything else from chanmux or reaches a private attribute of a
core object. Everything not exported here (the plugin registry, the hook caller, the lanes,
the config parser, ...) is the host's own and may change in any release.
"""

from . import codec, validators
from ._version import __version__
from .commands import Command
from .config import Config, ConfigError
from .delivery import Hold, Tracker
from .errors import ActionRequired, Refused, TryLater, describe
from .hookspecs import hookimpl, hookspec
from .host import Host, HostStopped
from .http import HTTPError, Request, Response, Route
from .journal import Journal
from .model import (
    Channel,
    File,
    FileKind,
    Location,
    Message,
    Reaction,
    Receipt,
    SentMessage,
    User,
    unique_id,
)
from .plug import Capabilities, Hook, NoConfig, Plug, State
from .queue import Delivery, DeliveryQueue, DeliveryQueues, current_key
from .registry import LoadError
from .relay import NameFormat, Overrides, Policies, Policy, relayed_fields
from .richtext import RichText, Segment
from .store import BatchWriter, Store, insert_new

__all__ = [
    "__version__", "ActionRequired", "BatchWriter", "Capabilities", "Channel", "codec", "Command",
    "Config", "ConfigError", "current_key", "Delivery", "DeliveryQueue", "DeliveryQueues",
    "describe", "File", "FileKind", "Hold", "Hook", "hookimpl", "hookspec", "Host",
    "HostStopped", "HTTPError", "insert_new", "Journal", "LoadError", "Location", "Message",
    "NameFormat", "NoConfig", "Overrides", "Plug", "Policies", "Policy", "Reaction", "Receipt", "Refused",
    "relayed_fields", "Request", "Response", "RichText", "Route", "Segment", "SentMessage",
    "State", "Store", "Tracker", "TryLater", "unique_id", "User", "validators",
]
