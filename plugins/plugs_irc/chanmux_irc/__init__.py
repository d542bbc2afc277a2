"""chanmux-irc: the `irc` plug type of chanmux (TLS, SASL, IRCv3, flood control, puppets)."""

__version__ = "0.1.0"

from .config import IRCConfig  # noqa: E402
from .plug import IRCPlug  # noqa: E402

__all__ = ["IRCConfig", "IRCPlug", "__version__"]
