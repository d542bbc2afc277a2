"""The version of the chanmux-matrix distribution (read by the packaging; `chanmux_matrix.__version__`)."""

__version__ = "0.2.2"
