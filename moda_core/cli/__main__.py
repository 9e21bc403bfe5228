from moda_core.cli import main

raise SystemExit(main())
