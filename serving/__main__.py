"""``python -m promofilter``: the same as the ``promofilter`` command."""

from promofilter.cli import main

raise SystemExit(main())
