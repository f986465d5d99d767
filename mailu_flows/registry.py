"""Resolve `registry/repo:tag` to the digest the registry serves, through the registry's own HTTP API
(Docker Registry v2 / OCI distribution), as `docker pull` would: a HEAD of the manifest, an anonymous
bearer token when the registry asks for one (ghcr.io, Docker Hub), the `Docker-Content-Digest` header.

A multi-architecture index resolves to the index's digest, which is what a pinned `@sha256:` of a
`docker pull` names. Plain HTTP is used only for loopback registries (a lab's, or a mirror on the host).
"""

from __future__ import annotations

import ipaddress
import re
from concurrent.futures import ThreadPoolExecutor

import httpx

from mailu_core.errors import MailuFlowsError

__all__ = ["RegistryError", "resolve_digest", "resolve_digests"]

_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(MailuFlowsError, RuntimeError):
    """The registry did not give a digest for a reference; the message names it and the answer."""


def _split(reference: str) -> tuple[str, str, str]:
    """(registry host, repository, tag) of `host[:port]/repo:tag`; Docker Hub's short names too."""
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        raise RegistryError(f"{reference!r} names no tag")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return "registry-1.docker.io", name if "/" in name else f"library/{name}", tag


def _scheme(host: str) -> str:
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        loopback = hostname == "localhost" or ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    return "http" if loopback else "https"


def _token(client: httpx.Client, challenge: str, repository: str) -> str | None:
    """An anonymous pull token from the realm a `WWW-Authenticate: Bearer …` challenge names."""
    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if realm is None:
        return None
    params.setdefault("scope", f"repository:{repository}:pull")
    answer = client.get(realm, params=params)
    answer.raise_for_status()
    body = answer.json()
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


def resolve_digest(reference: str, timeout: float = 20.0) -> str:
    """The `sha256:…` digest `reference` (`registry/repo:tag`) points to now."""
    host, repository, tag = _split(reference)
    url = f"{_scheme(host)}://{host}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": _ACCEPT}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            answer = client.head(url, headers=headers)
            if answer.status_code == 401:
                token = _token(client, answer.headers.get("www-authenticate", ""), repository)
                if token:
                    answer = client.head(url, headers={**headers, "Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise RegistryError(f"{reference}: {type(exc).__name__}: {exc}") from exc
    if answer.status_code == 404:
        raise RegistryError(f"{reference}: the registry has no such tag (HTTP 404)")
    if answer.status_code >= 300:
        raise RegistryError(f"{reference}: the registry answered HTTP {answer.status_code}")
    digest = str(answer.headers.get("docker-content-digest", ""))
    if not _DIGEST.match(digest):
        raise RegistryError(f"{reference}: no sha256 Docker-Content-Digest in the answer ({digest!r})")
    return digest


def resolve_digests(references: dict[str, str]) -> dict[str, str]:
    """`resolve_digest` of each value, concurrently; keys kept."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(references)))) as pool:
        return dict(zip(references, pool.map(resolve_digest, references.values()), strict=True))
