"""chanmux-sync: join channels on any networks into one conversation.

`SyncHook` relays each message of a channel to the other channels of its label, with edits,
deletes and replies following; `SyncPlug` is its virtual plug (one channel per label);
`SyncCache`, `SyncRef` and `SyncBackRef` keep track of every copy, in memory and in the host
database.
"""

from ._version import __version__

from .cache import SyncCache, SyncRef  # noqa: E402
from .config import Overrides, SyncConfig  # noqa: E402
from .hook import SyncHook  # noqa: E402
from chanmux import NameFormat  # noqa: E402
from .plug import SyncPlug  # noqa: E402
from .store import SyncBackRef  # noqa: E402

__all__ = ["NameFormat", "Overrides", "SyncBackRef", "SyncCache", "SyncConfig", "SyncHook",
           "SyncPlug", "SyncRef", "__version__"]
