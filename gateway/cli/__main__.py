"""`python -m gateway.cli`: the same as `smr`."""

from gateway.cli import main

raise SystemExit(main())
