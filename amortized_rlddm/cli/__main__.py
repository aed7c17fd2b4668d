"""`python -m amortized_rlddm.cli`: the `rlddm` command."""

import sys

from . import main

sys.exit(main())
