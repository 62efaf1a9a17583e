#!/usr/bin/env python
"""`python run.py --config CFG ...` in a checkout: the installed `committee` command (committee/cli.py), same
arguments, same exit codes; `python run.py --help` lists them."""

import sys

from committee.cli import main

if __name__ == "__main__":
    sys.exit(main())
