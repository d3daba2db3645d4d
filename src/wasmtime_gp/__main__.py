"""python -m wasmtime_gp: the command line."""

import sys

from wasmtime_gp.cli import main

sys.exit(main())
