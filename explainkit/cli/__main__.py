"""``python -m explainkit.cli``: the console script."""
import sys

from explainkit.cli.main import main

sys.exit(main())
