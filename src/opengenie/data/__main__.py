"""`python -m opengenie.data coinrun|video|atari|info ...`"""

import sys

from opengenie.data.cli import main

sys.exit(main())
