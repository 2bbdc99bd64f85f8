"""``python -m xrl.cli``: the same as the ``xrl`` command."""
from . import main

raise SystemExit(main())
