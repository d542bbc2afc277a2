"""chanmux-forward: copy messages one way, from source channels to destination channels.

`ForwardHook` forwards what people say in its source channels (named ones, or every channel
of some plugs) to its destinations, with author names by template, and never forwards a copy,
so no configuration loops.
"""

from chanmux import NameFormat

from ._version import __version__
from .config import ForwardConfig, Group, Overrides
from .hook import ForwardHook

__all__ = ["ForwardConfig", "ForwardHook", "Group", "NameFormat", "Overrides", "__version__"]
