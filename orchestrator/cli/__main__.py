"""`python -m orchestrator.cli`: the `grid` command."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
