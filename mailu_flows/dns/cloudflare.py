"""Cloudflare as a `Provider`, through the official `cloudflare` SDK (5.x).

Why these choices:
- Ownership is a comment marker on each record (`managed-by: mailu-flows; owner=<stack>`): Cloudflare
  keeps comments per record, so a foreign TXT beside ours stays foreign, and two stacks can share a zone.
- Mail records are never proxied (Cloudflare's proxy carries HTTP only): every A/AAAA/CNAME we write
  says `proxied=False` (the record option `cloudflare.proxied`, declared in `SUPPORT` with that
  default, so the core record knows nothing of it), and a proxied record we own is an update.
- TXT content is sent as quoted 255-byte character-strings (the API's documented form) and read back
  through `normalize_txt`, so a 2048-bit DKIM key never shows as changed when it is not.
- The SDK retries 408/409/429/5xx itself (`max_retries`); on top, a 429 that survives those gets our
  own bounded retries honouring `retry-after` (a rate limit is worth waiting for, a broken API is not).
- The API token is never logged or put in an error message; errors name the zone and the action.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import cloudflare
from pydantic import SecretStr

from mailu_core.dns import (
    Change,
    Plan,
    Record,
    normalize_name,
    normalize_value,
    txt_presentation,
)
from mailu_flows.dns.provider import (
    DEFAULT_OWNER,
    ApplyResult,
    DnsAuthError,
    DnsConnectionError,
    DnsError,
    OptionSpec,
    PlanOutdatedError,
    ProviderRecord,
    ProviderSupport,
    ZoneNotFoundError,
    check_in_zone,
)
from mailu_flows.dns.registry import ProviderPlugin

if TYPE_CHECKING:
    from mailu_core.config import StackConfig
    from mailu_flows.blocks.dns import CloudflareDns

__all__ = ["CLOUDFLARE_API", "PLUGIN", "PROXIABLE_TYPES", "SUPPORT", "CloudflareProvider", "owner_marker"]

PROXIABLE_TYPES = frozenset({"A", "AAAA", "CNAME"})
SUPPORT = ProviderSupport(
    record_types=frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS"}),
    features=frozenset({"list-whole-zone", "ownership-per-record", "record-comments"}),
    options={
        "proxied": OptionSpec(
            PROXIABLE_TYPES,
            False,
            "Cloudflare's HTTP proxy; mail is never proxied: a proxied record we own is an update",
        )
    },
)

CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
log = logging.getLogger(__name__)
T = TypeVar("T")
_PAGE = 1000


def owner_marker(owner: str) -> str:
    """The comment that marks a record as managed by this stack."""
    return f"managed-by: mailu-flows; owner={owner}"


@dataclass(frozen=True)
class _Entry:
    """One Cloudflare record (one value), with what we need to edit or delete it."""

    id: str
    name: str
    type: str
    ttl: int
    value: str
    proxied: bool | None
    comment: str | None


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _entry(rec: Any) -> _Entry:
    """SDK record model to an entry; branches on `type`, never on the model class (see infra-facts 1.3)."""
    rtype = str(rec.type).upper()
    content = rec.content if isinstance(rec.content, str) else ""
    if rtype == "MX":
        value = f"{int(rec.priority or 0)} {content}"
    elif rtype == "SRV":
        data = rec.data
        value = (
            f"{int(_get(data, 'priority') or 0)} {int(_get(data, 'weight') or 0)} "
            f"{int(_get(data, 'port') or 0)} {_get(data, 'target') or '.'}"
        )
    else:
        value = content
    proxied = bool(rec.proxied) if rtype in PROXIABLE_TYPES else None
    return _Entry(
        id=str(rec.id),
        name=normalize_name(str(rec.name)),
        type=rtype,
        ttl=int(rec.ttl),
        value=normalize_value(rtype, value),
        proxied=proxied,
        comment=rec.comment,
    )


def _proxied(rec: Record) -> bool | None:
    """The record's `cloudflare.proxied` option (False by default) where Cloudflare has a proxy flag."""
    return bool(rec.option("cloudflare", "proxied")) if rec.type in PROXIABLE_TYPES else None


class CloudflareProvider:
    """A Cloudflare zone, read and written through the official SDK; see the module docstring."""

    name = "cloudflare"
    support = SUPPORT

    def __init__(
        self,
        zone: str,
        api_token: str | SecretStr,
        base_url: str = CLOUDFLARE_API,
        *,
        owner: str = DEFAULT_OWNER,
        max_retries: int = 2,
        rate_limit_retries: int = 4,
        max_retry_wait_s: float = 60.0,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        token = api_token.get_secret_value() if isinstance(api_token, SecretStr) else api_token
        self._zone = normalize_name(zone)
        self.base_url = base_url
        self.owner = owner
        self.marker = owner_marker(owner)
        self.rate_limit_retries = rate_limit_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._sleep = sleep
        self._cf = cloudflare.Cloudflare(
            api_token=token, base_url=base_url, max_retries=max_retries, timeout=timeout_s
        )
        self._zone_id: str | None = None
        self._index: dict[Record, list[_Entry]] = {}

    @classmethod
    def from_block(cls, block: CloudflareDns, zone: str, **kwargs: Any) -> CloudflareProvider:
        """From the `CloudflareDns` Prefect block (token and base URL)."""
        return cls(zone, block.api_token, str(block.base_url), **kwargs)

    def __repr__(self) -> str:
        return f"CloudflareProvider(zone={self._zone!r}, base_url={self.base_url!r}, owner={self.owner!r})"

    @property
    def zone(self) -> str:
        return self._zone

    # --- API calls with error mapping and our rate-limit retries -----------------------------------

    def _call(self, action: str, fn: Callable[[], T], write: bool = False) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except cloudflare.RateLimitError as e:
                attempt += 1
                if attempt > self.rate_limit_retries:
                    raise DnsError(
                        f"Cloudflare kept rate-limiting ({action} in zone {self._zone}) after "
                        f"{attempt} tries; try again later"
                    ) from e
                wait = self._retry_after(e, attempt)
                log.warning("Cloudflare rate limit on %s; retrying in %.1fs", action, wait)
                self._sleep(wait)
            except cloudflare.PermissionDeniedError as e:
                need = "DNS edit permission" if write else "permission to read"
                raise DnsAuthError(
                    f"Cloudflare refused to {action} (HTTP 403{self._detail(e)}): the API token lacks {need} "
                    f"for zone {self._zone}; give it Zone:Read and Zone.DNS:Edit on this zone"
                ) from e
            except cloudflare.AuthenticationError as e:
                raise DnsAuthError(
                    f"Cloudflare did not accept the API token (HTTP 401{self._detail(e)}) to {action} "
                    f"in zone {self._zone}"
                ) from e
            except cloudflare.APIStatusError as e:
                raise DnsError(
                    f"Cloudflare refused to {action} in zone {self._zone}: "
                    f"HTTP {e.status_code}{self._detail(e)}"
                ) from e
            except cloudflare.APIConnectionError as e:
                raise DnsConnectionError(
                    f"cannot reach the Cloudflare API at {self.base_url} to {action}: {type(e).__name__}"
                ) from e

    def _retry_after(self, e: cloudflare.APIStatusError, attempt: int) -> float:
        headers = e.response.headers
        wait: float | None = None
        try:
            if headers.get("retry-after-ms") is not None:
                wait = float(headers["retry-after-ms"]) / 1000.0
            elif headers.get("retry-after") is not None:
                wait = float(headers["retry-after"])
        except ValueError:
            wait = None
        if wait is None or wait < 0:
            wait = min(2.0 ** (attempt - 1), 30.0)
        return min(wait, self.max_retry_wait_s)

    @staticmethod
    def _detail(e: cloudflare.APIStatusError) -> str:
        body = e.body if isinstance(e.body, dict) else {}
        errors = body.get("errors") or []
        msgs = [f"{_get(x, 'code')}: {_get(x, 'message')}" for x in errors if _get(x, "message")]
        return f", {'; '.join(msgs)}" if msgs else ""

    def zone_id(self) -> str:
        """The zone's id, looked up by name once; `ZoneNotFoundError` names the zone if there is none."""
        if self._zone_id is None:
            page = self._call(f"look up zone {self._zone}", lambda: self._cf.zones.list(name=self._zone))
            found = [z for z in page.result if normalize_name(str(z.name)) == self._zone]
            if not found:
                raise ZoneNotFoundError(
                    f"Cloudflare has no zone named {self._zone!r} that this API token can see "
                    "(check dns.zone in the stack config and the token's zone resources)"
                )
            self._zone_id = str(found[0].id)
        return self._zone_id

    # --- reading -----------------------------------------------------------------------------------

    def _entries(self) -> list[_Entry]:
        zid = self.zone_id()
        out: list[_Entry] = []
        page = 1
        while True:

            def fetch(p: int = page) -> Any:
                return self._cf.dns.records.list(zone_id=zid, page=p, per_page=_PAGE)

            resp = self._call(f"list the records of {self._zone}", fetch)
            items = list(resp.result)
            out.extend(_entry(r) for r in items)
            if len(items) < _PAGE:
                return out
            page += 1

    def list_records(self, names: Collection[str] = ()) -> list[ProviderRecord]:
        """The zone's records (Cloudflare hides apex SOA/NS); a record is owned if it carries our marker.

        Values of one name and type (except TXT) form one record, owned only if every value is.
        """
        groups: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
        out: list[ProviderRecord] = []
        index: dict[Record, list[_Entry]] = {}
        for e in self._entries():
            if e.type in ("SOA",) or (e.type == "NS" and e.name == self._zone):
                continue
            if e.type == "TXT":
                rec = Record(e.name, "TXT", e.ttl, (e.value,))  # TXT is never proxiable
                index.setdefault(rec, []).append(e)
                out.append(ProviderRecord(rec, e.comment == self.marker))
            else:
                groups[(e.name, e.type)].append(e)
        for (name, rtype), entries in groups.items():
            ttls = {e.ttl for e in entries}
            options = {"proxied": any(bool(e.proxied) for e in entries)} if rtype in PROXIABLE_TYPES else {}
            ttl = ttls.pop() if len(ttls) == 1 else -1
            rec = Record(
                name, rtype, ttl, tuple(e.value for e in entries), ((self.name, tuple(options.items())),)
            )
            index[rec] = entries
            out.append(ProviderRecord(rec, all(e.comment == self.marker for e in entries)))
        self._index = index
        return sorted(out, key=lambda p: p.record.key)

    # --- writing -----------------------------------------------------------------------------------

    def _params(self, rtype: str, name: str, ttl: int, value: str, proxied: bool | None) -> dict[str, Any]:
        p: dict[str, Any] = {
            "zone_id": self.zone_id(),
            "name": name,
            "type": rtype,
            "ttl": ttl,
            "comment": self.marker,
        }
        if rtype in PROXIABLE_TYPES:
            p["proxied"] = bool(proxied)
        if rtype == "MX":
            prio, target = value.split()
            p["content"], p["priority"] = target, int(prio)
        elif rtype == "SRV":
            prio, weight, port, target = value.split()
            p["data"] = {"priority": int(prio), "weight": int(weight), "port": int(port), "target": target}
        elif rtype == "TXT":
            p["content"] = txt_presentation(value)
        else:
            p["content"] = value
        return p

    def _create(self, rec: Record, value: str) -> None:
        params = self._params(rec.type, rec.name, rec.ttl, value, _proxied(rec))
        self._call(f"create {rec.name} {rec.type}", lambda: self._cf.dns.records.create(**params), write=True)

    def _edit(self, entry: _Entry, rec: Record, value: str) -> None:
        params = self._params(rec.type, rec.name, rec.ttl, value, _proxied(rec))
        self._call(
            f"edit {rec.name} {rec.type}", lambda: self._cf.dns.records.edit(entry.id, **params), write=True
        )

    def _delete(self, entry: _Entry) -> None:
        zid = self.zone_id()
        self._call(
            f"delete {entry.name} {entry.type}",
            lambda: self._cf.dns.records.delete(entry.id, zone_id=zid),
            write=True,
        )

    def _entries_for(self, rec: Record) -> list[_Entry]:
        entries = self._index.get(rec)
        if entries is None:
            raise PlanOutdatedError(
                f"{rec.name} {rec.type} changed in zone {self._zone} since the plan was made; plan again"
            )
        return entries

    def _apply_change(self, change: Change) -> None:
        if change.kind == "create":
            assert change.new is not None
            for value in change.new.values:
                self._create(change.new, value)
            return
        assert change.old is not None
        entries = self._entries_for(change.old)
        if change.kind == "delete":
            for e in entries:
                self._delete(e)
            return
        new = change.new
        assert new is not None
        keep = [e for e in entries if e.value in new.values]
        kept_values = {e.value for e in keep}
        missing = [v for v in new.values if v not in kept_values]
        leftover = [e for e in entries if e not in keep]
        want_proxied = _proxied(new)
        for e in keep:
            if e.ttl != new.ttl or e.proxied != want_proxied or e.comment != self.marker:
                self._edit(e, new, e.value)
        for e, value in zip(leftover, missing, strict=False):
            self._edit(e, new, value)
        for value in missing[len(leftover) :]:
            self._create(new, value)
        for e in leftover[len(missing) :]:
            self._delete(e)

    def apply(self, plan: Plan) -> ApplyResult:
        """Apply the changes in order, one API call per value; an empty plan calls nothing.

        On the first failure, raises the error with `.result` (applied / failed / not applied).
        """
        if plan.empty:
            return ApplyResult(self._zone)
        check_in_zone([c.record for c in plan.changes], self._zone)
        self.list_records()  # fresh ids; an owned record that changed since the plan is caught below
        changes = list(plan.changes)
        applied: list[Change] = []
        for i, change in enumerate(changes):
            log.info("cloudflare %s: %s", self._zone, change)
            try:
                self._apply_change(change)
            except DnsError as e:
                raise e.with_result(
                    ApplyResult(self._zone, tuple(applied), change, str(e), tuple(changes[i + 1 :]))
                ) from e.__cause__
            applied.append(change)
        return ApplyResult(self._zone, tuple(applied))


def _connect(config: StackConfig, owner: str) -> CloudflareProvider:
    """From the config's `blocks.dns_provider` (a mailu-cloudflare block); its token is redacted."""
    from mailu_flows import redact
    from mailu_flows.blocks import CloudflareDns, load_block

    block = load_block(CloudflareDns, config.blocks.dns_provider)
    redact.register_secret(block.api_token.get_secret_value())
    return CloudflareProvider.from_block(block, config.dns.zone, owner=owner)


def _block_type() -> type[Any]:
    from mailu_flows.blocks import CloudflareDns

    return CloudflareDns


PLUGIN = ProviderPlugin(
    "cloudflare",
    "Cloudflare's API (token in a mailu-cloudflare block)",
    SUPPORT,
    _connect,
    _block_type,
)
