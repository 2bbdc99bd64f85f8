"""``python -m xrl.vision.interface --agent breakout --quick``: see :mod:`xrl.vision.interface.cli`."""
from .cli import main

raise SystemExit(main())
