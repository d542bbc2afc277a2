"""chanmux-irc: the `irc` plug type of chanmux (TLS, SASL, IRCv3, flood control, puppets)."""

from ._version import __version__
from .config import IRCConfig
from .plug import IRCPlug

__all__ = ["IRCConfig", "IRCPlug", "__version__"]
