"""Allow ``python -m kodelyth_ecc``."""

from kodelyth_ecc.main import main

raise SystemExit(main())
