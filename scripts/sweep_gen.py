#!/usr/bin/python3
"""Seeded scenario generators for the parameter sweeps of scripts/sweep.py (docs/sweep.md).

The program of activemm.sweep_gen (scripts/activemm/sweep_gen.py, which says what it does and how).
"""
import sys

from activemm.sweep_gen import main

if __name__ == "__main__":
    sys.exit(main())
