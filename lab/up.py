"""`mailu-flows lab up|down|status`: bring the whole lab up idempotently, report it, tear it down.

Order matters: the engine and registry before images, images before the containers that run
them, DNS before the Cloudflare emulator that writes into it, Prefect before the blocks saved in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab import endpoints as ep
from lab.procs import running_pid


@dataclass
class StepReport:
    """What one `lab up` step did and how long it took."""

    name: str
    seconds: float
    detail: str = ""


@dataclass
class UpReport:
    steps: list[StepReport] = field(default_factory=list)

    def timed(self, name: str, fn: Callable[[], object]) -> Any:
        start = time.monotonic()
        result = fn()
        self.steps.append(
            StepReport(name, time.monotonic() - start, "" if result is None else str(result)[:200])
        )
        return result


def lab_up(progress: Callable[[str], None] = lambda _msg: None) -> UpReport:
    """Bring every part of the lab up; seconds when already up."""
    from lab import host, services, traefik
    from lab.ca import ensure_ca
    from lab.cf_emulator import ensure_cf_emulator
    from lab.dns import ensure_dns
    from lab.images import ensure_images
    from lab.pebble import ensure_pebble
    from lab.stack import write_lab_stack_config
    from lab.webhook import ensure_webhook

    report = UpReport()

    def step(name: str, fn: Callable[[], object]) -> Any:
        progress(f"lab up: {name} ...")
        return report.timed(name, fn)

    step("docker engine", host.ensure_dockerd)
    step("registry", host.ensure_registry)
    step("networks", host.ensure_networks)
    step("stack left by another lab", lambda: host.claim_stack(ep.lab_dir(), lab_stack_volumes()))
    step("sshd", host.ensure_sshd)
    ca = step("lab CA", lambda: ensure_ca(ep.lab_dir() / "ca"))
    images = step("images", ensure_images)
    step("forward-auth", lambda: traefik.ensure_forward_auth(images["forward-auth"]))
    step("traefik", lambda: traefik.ensure_traefik(images["traefik"], ca))
    step("dns", ensure_dns)
    step("acme server", lambda: ensure_pebble(ca))
    step("cloudflare emulator", ensure_cf_emulator)
    step("gpg", services.ensure_gpg)
    step("prometheus", services.ensure_prometheus)
    step("prefect server", services.ensure_prefect)
    step("blocks and stack.yaml", lambda: write_lab_stack_config(images))
    step("failure notifications", ensure_webhook)
    return report


def lab_down(remove_images: bool = False) -> list[str]:
    """Stop every process the lab started (by pid), remove its containers and networks; keep volumes
    and, unless asked, built images."""
    from lab import host, services, traefik
    from lab.cf_emulator import stop_cf_emulator
    from lab.dns import stop_dns
    from lab.pebble import stop_pebble
    from lab.prefect_pg import stop_prefect_pg
    from lab.procs import stop_daemon

    done: list[str] = [name for name in ("serve", "webhook") if stop_daemon(name)]
    done += stop_prefect_pg()  # started on demand (tests/lab/test_workers.py): workers, server, PostgreSQL
    done += services.stop_services()
    stop_cf_emulator()
    stop_pebble()
    stop_dns()
    services.stop_gpg_agent()
    if host.docker_answers():
        traefik.remove_traefik()
        host.remove_lab_containers()
        host.remove_networks()
        if remove_images:
            host.remove_lab_images()
    done += host.stop_host_daemons()
    return done


def lab_status() -> dict[str, Any]:
    """What runs, and the endpoints a user or a test needs (no secret values)."""
    from lab import host, services, traefik
    from lab.procs import tcp_open
    from lab.webhook import WEBHOOK_PORT

    d = ep.lab_dir()
    docker_up = host.docker_answers()
    parts: dict[str, bool] = {
        "dockerd": docker_up,
        "registry": host.registry_answers(),
        "sshd": tcp_open(ep.SSH_HOST, ep.SSH_PORT),
        "traefik": docker_up and traefik.container_running(traefik.TRAEFIK_CONTAINER),
        "forward-auth": docker_up and traefik.container_running(traefik.FORWARD_AUTH_CONTAINER),
        "dns-primary": running_pid("knot-primary") is not None,
        "dns-secondary": running_pid("knot-secondary") is not None,
        "cloudflare-emulator": tcp_open("127.0.0.1", ep.CF_EMULATOR_PORT),
        "acme-server": tcp_open("127.0.0.1", ep.ACME_PORT),
        "prometheus": services.prometheus_ready(),
        "prefect-server": services.prefect_healthy(),
        "notification-webhook": tcp_open("127.0.0.1", WEBHOOK_PORT),
    }
    return {
        "up": all(parts.values()),
        "parts": parts,
        "lab_dir": str(d),
        "stack_config": str(d / "stack.yaml"),
        "ssh": {
            "host": ep.SSH_HOST,
            "port": ep.SSH_PORT,
            "user": ep.SSH_USER,
            "private_key_file": str(d / "ssh" / "client_ed25519"),
            "known_hosts_file": str(d / "ssh" / "known_hosts"),
        },
        "stack_root": str(host.host_root()),
        "registry": ep.REGISTRY_HOST,
        "acme": {"directory": ep.ACME_DIRECTORY, "public_address": ep.public_address()},
        "dns": {
            "zone": ep.ZONE,
            "primary": f"{ep.DNS_PRIMARY}:{ep.DNS_PORT}",
            "secondary": f"{ep.DNS_SECONDARY}:{ep.DNS_PORT}",
            "tsig_key_name": ep.TSIG_KEY_NAME,
        },
        "cloudflare_emulator": ep.CF_BASE_URL,
        "traefik": {
            "api": ep.TRAEFIK_API_URL,
            "entrypoints": {
                e.name: f"127.0.0.1:{e.host_port}" for e in (*ep.MAIL_ENTRYPOINTS, *ep.WEB_ENTRYPOINTS)
            },
        },
        "prefect": {"api": ep.PREFECT_API_URL, "ui": f"http://127.0.0.1:{ep.PREFECT_PORT}"},
        "prometheus": f"http://127.0.0.1:{ep.PROMETHEUS_PORT}",
    }


def lab_stack_volumes() -> list[str]:
    """The volumes of the stack the lab deploys: the config's default names, and the `mailu_real_*` set
    the Mailu-image test deploys on (tests/lab/test_mailu_stack.py)."""
    from mailu_core.config import Volumes

    return [*Volumes().model_dump().values(), *(f"mailu_real_{field}" for field in Volumes.model_fields)]
