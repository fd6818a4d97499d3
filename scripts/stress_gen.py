#!/usr/bin/python3
"""A seeded random scenario generator for stress runs (docs/scenarios.md's format).

The program of activemm.stress_gen (scripts/activemm/stress_gen.py, which says what it does and how).
"""
import sys

from activemm.stress_gen import main

if __name__ == "__main__":
    sys.exit(main())
