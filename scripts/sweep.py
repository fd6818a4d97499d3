#!/usr/bin/python3
"""Parameter sweeps over generated scenarios: a CSV of counters and three PNG plots.

The program of activemm.sweep (scripts/activemm/sweep.py, which says what it does and how).
"""
import sys

from activemm.sweep import main

if __name__ == "__main__":
    sys.exit(main())
