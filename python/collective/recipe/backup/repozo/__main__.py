"""``python -m collective.recipe.backup.repozo``: see :mod:`.cli`."""

import sys

from collective.recipe.backup.repozo.cli import main


sys.exit(main())
