"""chanmux-irc: the `irc` plug type of chanmux (TLS, SASL, IRCv3, flood control, puppets)."""

from ._version import __version__

from .config import IRCConfig  # noqa: E402
from .plug import IRCPlug  # noqa: E402

__all__ = ["IRCConfig", "IRCPlug", "__version__"]
