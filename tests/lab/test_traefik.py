"""The lab's Traefik: every file-provider object enabled, the host's middlewares answering as expected."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab import endpoints as ep
from lab import traefik

pytestmark = pytest.mark.lab


def _https_get(lab: dict[str, Any], host: str, path: str = "/") -> int:
    """GET https://host{path} through Traefik's websecure entrypoint, verifying the lab CA and `host`."""
    ctx = ssl.create_default_context(cafile=str(Path(lab["lab_dir"]) / "ca" / "ca.crt"))
    url = f"https://127.0.0.1:{ep.WEB_ENTRYPOINTS[1].host_port}{path}"
    with httpx.Client(verify=ctx, timeout=5) as client:
        resp = client.get(url, headers={"Host": host}, extensions={"sni_hostname": host})
    return resp.status_code


def test_every_file_provider_object_is_enabled(lab: dict[str, Any]) -> None:
    raw = traefik.api_get("/api/rawdata")
    for name in ("traefik-dashboard@file", "whoami@file"):
        assert raw["routers"][name]["status"] == "enabled"
    for name in ep.MIDDLEWARES:
        assert raw["middlewares"][f"{name}@file"]["status"] == "enabled"
    assert traefik.disabled_objects() == []


def test_mail_entrypoints_exist(lab: dict[str, Any]) -> None:
    names = {e["name"] for e in traefik.api_get("/api/entrypoints")}
    assert {e.name for e in ep.MAIL_ENTRYPOINTS} <= names
    assert {"web", "websecure"} <= names


def test_forward_auth_refuses_without_credentials(lab: dict[str, Any]) -> None:
    assert _https_get(lab, f"traefik.{ep.ZONE}", "/dashboard/") == 401


def test_broken_dynamic_file_shows_as_disabled(lab: dict[str, Any]) -> None:
    """Traefik keeps running on a bad dynamic file; /api/rawdata is where the error shows."""
    bad = traefik.dynamic_dir() / "zz-test-broken.yml"
    bad.write_text("http:\n  routers:\n    zz-broken:\n      rule: Host(`x.test`)\n      service: nope\n")
    try:
        traefik.wait_until_loaded(["routers/zz-broken@file"])
        assert any("zz-broken@file" in item for item in traefik.disabled_objects())
    finally:
        bad.unlink()
