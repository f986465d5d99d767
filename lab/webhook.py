"""A local webhook receiver for the lab's failure notifications: appends every POST body to a file.

Run as a lab daemon: `python -m lab.webhook PORT FILE`. Loopback only.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEBHOOK_PORT = 18790


def webhook_log() -> Path:
    from lab.endpoints import lab_dir

    return lab_dir() / "notifications.jsonl"


def serve(port: int, log: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with log.open("ab") as fh:
                fh.write(body.replace(b"\n", b" ") + b"\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def ensure_webhook() -> str:
    """Start the receiver, save a webhook notification block `lab-notify` and the notification
    automations."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lab.endpoints import PREFECT_API_URL as LAB_API
    from lab.procs import start_daemon, tcp_open
    from mailu_flows.notifications import ensure_notification_automations

    start_daemon(
        "webhook",
        [sys.executable, "-m", "lab.webhook", str(WEBHOOK_PORT), str(webhook_log())],
        ready=lambda: tcp_open("127.0.0.1", WEBHOOK_PORT),
    )
    url = f"http://127.0.0.1:{WEBHOOK_PORT}/notify"
    with temporary_settings({PREFECT_API_URL: LAB_API}):
        body = {"subject": "{{subject}}", "body": "{{body}}"}
        block = CustomWebhookNotificationBlock(name="lab-notify", url=url, method="POST", json_data=body)
        block.save("lab-notify", overwrite=True)
        ensure_notification_automations("custom-webhook/lab-notify")
    return url


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
