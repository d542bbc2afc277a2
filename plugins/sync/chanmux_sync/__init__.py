"""chanmux-sync: join channels on any networks into one conversation.

`SyncHook` relays each message of a channel to the other channels of its label, with edits,
deletes and replies following; `SyncPlug` is its virtual plug (one channel per label);
`SyncCache`, `SyncRef` and `SyncBackRef` keep track of every copy, in memory and in the host
database.
"""

from chanmux import NameFormat

from ._version import __version__
from .cache import SyncCache, SyncRef
from .config import Overrides, SyncConfig
from .hook import SyncHook
from .plug import SyncPlug
from .store import SyncBackRef

__all__ = ["NameFormat", "Overrides", "SyncBackRef", "SyncCache", "SyncConfig", "SyncHook",
           "SyncPlug", "SyncRef", "__version__"]
