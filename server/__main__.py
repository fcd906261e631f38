"""``python -m modelbook.server server ...``: the server commands without modelbook's CLI."""

import sys

from modelbook.server.cli import main

sys.exit(main())
