"""`mailu-flows blocks ...` (placeholder until implemented)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("blocks", help="blocks commands")
    parser.set_defaults(func=lambda args: 2)
