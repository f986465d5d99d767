"""Minimal SMTP/IMAP dialogue helpers over raw sockets, so tests control TLS verification and PROXY headers."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from lab.endpoints import MAIL_HOSTNAME


def tls_context(ca_cert: Path) -> ssl.SSLContext:
    """A client context that trusts only the lab CA and checks the hostname."""
    ctx = ssl.create_default_context(cafile=str(ca_cert))
    ctx.check_hostname = True
    return ctx


class Conn:
    """A line-oriented client connection (plain, STARTTLS-upgradable, or implicit TLS)."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0, prefix: bytes = b"",
                 tls: ssl.SSLContext | None = None, server_hostname: str = MAIL_HOSTNAME) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        if prefix:
            self.sock.sendall(prefix)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""

    def readline(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed; partial data {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def smtp_reply(self) -> list[str]:
        """Read one (possibly multi-line) SMTP reply."""
        lines = [self.readline()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.readline())
        return lines

    def imap_until(self, tag: str) -> list[str]:
        lines = [self.readline()]
        while not lines[-1].startswith(tag + " "):
            lines.append(self.readline())
        return lines

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def starttls(self, ctx: ssl.SSLContext, server_hostname: str = MAIL_HOSTNAME) -> None:
        assert not self.buf, f"unread data before STARTTLS: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def proxy_v2_header(src: str, src_port: int, dst: str, dst_port: int) -> bytes:
    """A PROXY protocol v2 header for TCP over IPv4 (what Traefik sends to the front)."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addr = socket.inet_aton(src) + socket.inet_aton(dst) + src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big")
    return sig + bytes([0x21, 0x11]) + len(addr).to_bytes(2, "big") + addr


def smtp_starttls_check(host: str, port: int, ctx: ssl.SSLContext, prefix: bytes = b"") -> list[str]:
    """Banner, EHLO offering STARTTLS, STARTTLS with a verified handshake, EHLO again; returns the banner."""
    c = Conn(host, port, prefix=prefix)
    try:
        banner = c.smtp_reply()
        assert banner[0].startswith("220 "), banner
        c.send("EHLO client.example.test")
        ehlo = c.smtp_reply()
        assert ehlo[-1].startswith("250 "), ehlo
        assert any(line[4:].upper().startswith("STARTTLS") for line in ehlo), ehlo
        c.send("STARTTLS")
        assert c.smtp_reply()[0].startswith("220"), "STARTTLS refused"
        c.starttls(ctx)
        c.send("EHLO client.example.test")
        assert c.smtp_reply()[-1].startswith("250 ")
        c.send("QUIT")
        return banner
    finally:
        c.close()
