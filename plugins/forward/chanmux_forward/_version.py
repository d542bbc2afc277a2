"""The version of the chanmux-forward distribution (read by the packaging; `chanmux_forward.__version__`)."""

__version__ = "0.2.2"
