from neurokd.cli import main

raise SystemExit(main())
