"""The version of the chanmux-irc distribution (read by the packaging; `chanmux_irc.__version__`)."""

__version__ = "0.2.2"
