"""Tests of the scripts in benchmarks/ (a folder of scripts, not a package)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def benchmark_module(name: str):
    """benchmarks/<name>.py imported as a module: the folder is on sys.path only while it imports, so the
    script's own imports of its siblings (perception_ab_kinds imports perception_ab) resolve."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
