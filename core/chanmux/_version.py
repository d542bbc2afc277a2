"""The version of the chanmux core distribution (read by the packaging and `chanmux --version`)."""

__version__ = "0.2.5"
