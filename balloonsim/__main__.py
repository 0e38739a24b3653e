from balloonsim.cli import main

raise SystemExit(main())
