"""``python -m sap.cli`` is the ``sap`` command."""

from sap.cli import main

raise SystemExit(main())
