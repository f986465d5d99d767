"""Shared helpers for the pure DNS tests: the example config, patched to other domains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailu_core.config import StackConfig, stack_config_from_mapping

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml"


def example_config(**mailu: Any) -> StackConfig:
    """The example config with `mailu.*` overrides (e.g. alternative_domains, public_ipv6)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mailu"].update(mailu)
    return stack_config_from_mapping(data, source="example")


@pytest.fixture(scope="session")
def rsa_public_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
