#!/usr/bin/python3
"""Regenerates the sample outputs in docs/*.md from real runs, so that they cannot go stale.

The program of activemm.doc_samples (scripts/activemm/doc_samples.py, which says what it does and how).
"""
import sys

from activemm.doc_samples import main

if __name__ == "__main__":
    sys.exit(main())
