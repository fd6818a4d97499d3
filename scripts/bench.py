#!/usr/bin/python3
"""The benchmark: where the time of a replayed switch goes, on the host it runs on.

The program of activemm.bench (scripts/activemm/bench.py, which says what it does and how).
"""
import sys

from activemm.bench import main

if __name__ == "__main__":
    sys.exit(main())
