"""`python -m metalr`: the CLI, run by the interpreter that runs it (Snakemake rules use its own)."""
import sys

from metalr.cli import main

sys.exit(main())
