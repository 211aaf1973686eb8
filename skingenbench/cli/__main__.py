"""``python -m skingenbench.cli``: the same as the ``skingenbench`` console script."""

import sys

from skingenbench.cli import main

sys.exit(main())
