"""chanmux-matrix: a chanmux plug for Matrix (``type = "matrix"``).

Public API: `MatrixPlug` (the plug type), `MatrixConfig` (its config keys), and the HTML
converters `parse_html` / `render_html` that turn ``formatted_body`` into RichText and back.
"""

from ._version import __version__
from .config import MatrixConfig
from .html import parse_html, render_html
from .plug import MatrixPlug

__all__ = ["MatrixConfig", "MatrixPlug", "__version__", "parse_html", "render_html"]
