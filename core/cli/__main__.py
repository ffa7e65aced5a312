"""`python -m core.cli ...`: the same as the `clearmark` command."""

import sys

from core.cli.main import main

sys.exit(main())
