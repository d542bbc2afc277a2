"""`python -m chanmux`: the `chanmux` command."""

import sys

from .cli import main

sys.exit(main())
