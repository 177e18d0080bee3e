"""``python -m local.bench``: see :mod:`local.bench`."""

import sys

from local.bench.orchestration import main

sys.exit(main())
