"""`mailu-flows config ...` (placeholder until implemented)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("config", help="config commands")
    parser.set_defaults(func=lambda args: 2)
