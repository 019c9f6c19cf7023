"""``python -m neurokd.cli`` (as torchrun starts each process)."""

from neurokd.cli.main import main

raise SystemExit(main())
