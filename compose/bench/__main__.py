"""``python -m compose.bench``: see :mod:`compose.bench.run`."""

import sys

from compose.bench.run import main

sys.exit(main())
