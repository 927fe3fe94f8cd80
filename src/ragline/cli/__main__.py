"""`python -m ragline.cli`."""

import sys

from ragline.cli.app import main

sys.exit(main())
