"""``python -m admmrelu``: see :mod:`admmrelu.cli`."""

import sys

from .cli import main

sys.exit(main())
