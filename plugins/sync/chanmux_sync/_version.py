"""The version of the chanmux-sync distribution (read by the packaging; `chanmux_sync.__version__`)."""

__version__ = "0.2.2"
