"""Tell a batch's webhook when it finishes or pauses: a signed JSON summary, retried.

An event is stored (table `deliveries`) in the transaction that finishes or pauses the batch,
with its body fixed then; delivering it is separate work (the scheduler's own thread, or the
end of `veo-batch run`), so a slow or failing receiver never holds up a submission. Each try
is recorded (`delivery_attempts`); a failure is tried again with a growing delay, up to
`MAX_TRIES`.

The receiver checks the signature: HMAC-SHA256, keyed with VEO_WEBHOOK_SECRET, of
`"{X-Veo-Batch-Timestamp}.{body}"`, sent as `X-Veo-Batch-Signature: sha256=<hex>`; a
timestamp far from its clock means a replay. `X-Veo-Batch-Delivery` is the same on every try
of one event, so a receiver can drop repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.destinations import Destinations, refusal
from veobatch.errors import VeoBatchError
from veobatch.lifecycle.backoff import WEBHOOK_RETRY
from veobatch.metrics import count_webhook
from veobatch.pricing import decimal_text
from veobatch.settings import Secret
from veobatch.store.queries import status_counts
from veobatch.store.tables import Batch, Delivery, DeliveryAttempt

if TYPE_CHECKING:
    import httpx

# httpx is imported where a call is made: queueing a webhook (every finished batch) needs
# none, and the command line starts faster without it.
log = logging.getLogger("veobatch.webhooks")
MAX_TRIES: Final = 10
CLAIM: Final = timedelta(minutes=2)  # a delivery being tried is not tried again meanwhile
TIMEOUT: Final = (10.0, 5.0)  # seconds: the whole call, and connecting
MAX_URL: Final = 2000
_HOST: Final = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")  # a name (IDNA), an IPv6


def sign(secret: Secret, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.reveal().encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def notify(conn: Connection, batch_ids: list[int], event: str, now: datetime) -> int:
    """Store `event` for each of `batch_ids` that has a webhook, with the batch as it is now;
    in the caller's transaction. The number stored."""
    if not batch_ids:
        return 0
    batches = conn.execute(
        sa.select(
            Batch.id,
            Batch.name,
            Batch.state,
            Batch.pause_reason,
            Batch.webhook_url,
            Batch.committed_micros,
            Batch.budget_micros,
        ).where(Batch.id.in_(batch_ids), Batch.webhook_url.is_not(None))
    ).all()
    counted = status_counts(conn, [batch.id for batch in batches])
    for batch in batches:
        counts = counted[batch.id]
        body = {
            "event": event,
            "batch": batch.name,
            "state": batch.state,
            "pause_reason": batch.pause_reason,
            "total": sum(counts.values()),
            "counts": counts,
            # What its rows spent or hold now, and its budget, as decimal text (the currency
            # is VEO_CURRENCY's): a pause with reason budget comes with its figures.
            "committed": decimal_text(batch.committed_micros),
            "budget": None if batch.budget_micros is None else decimal_text(batch.budget_micros),
            "at": now.isoformat(),
        }
        conn.execute(
            sa.insert(Delivery).values(
                batch_id=batch.id,
                event=event,
                url=batch.webhook_url,
                created_at=now,
                payload=json.dumps(body, ensure_ascii=False),
                next_attempt_at=now,
            )
        )
    return len(batches)


def check_target(url: str, *, allow_private: bool) -> str:
    """`url` if it may be a webhook: a real http(s) URL with a host name or address, no user
    name or password in it; a literal private, loopback or link-local address (or
    `localhost`) only with `allow_private`. The reason (`VeoBatchError`) otherwise. Names are
    resolved, and checked again, when a call is made."""
    import httpx  # noqa: PLC0415 - see the module's imports

    where = f"webhook_url {url[:100]!r}"
    try:
        parsed = httpx.URL(url)
        host, port = parsed.raw_host.decode("ascii"), parsed.port
        parsed.host  # noqa: B018 - decodes an IDNA name: a malformed one raises here
    except Exception:  # hostile input: any failure to parse is the answer
        raise VeoBatchError(f"{where} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not host or len(url) > MAX_URL:
        raise VeoBatchError(f"{where} is not an http(s) URL with a host")
    if parsed.userinfo:
        raise VeoBatchError(f"{where} carries a user name or password; put secrets elsewhere")
    if not _HOST.fullmatch(host) or (port is not None and not 0 < port < 65536):
        raise VeoBatchError(f"{where} has no valid host name and port")
    if not allow_private and (_refused_address(host) or _is_local_name(host)):
        raise VeoBatchError(
            f"{where} points at this network ({host}); VEO_WEBHOOK_ALLOW_PRIVATE=true allows it"
        )
    return url


def _refused_address(host: str) -> bool:
    """A literal address a webhook may not call (see `destinations.refusal`)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return refusal(address) is not None


def _is_local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def webhook_client(allow_private: bool) -> httpx.Client:
    """The client that calls webhooks: every connection checked where it goes (a host that
    resolves into this network is refused, and the address checked is the one connected
    to), no redirect followed."""
    import httpx  # noqa: PLC0415 - see the module's imports

    from veobatch.provider.watched import watched_transport  # noqa: PLC0415 - (httpx)

    where = Destinations(allow_private=allow_private, setting="VEO_WEBHOOK_ALLOW_PRIVATE")
    return httpx.Client(follow_redirects=False, transport=watched_transport(where))


def deliver_due(
    engine: Engine,
    http: httpx.Client,
    secret: Secret | None,
    now: datetime,
    *,
    allow_private: bool,
    limit: int = 20,
) -> int:
    """Try each delivery due at `now` once; how many arrived. Whatever goes wrong with one
    call (a refused or unresolvable target, any error of the HTTP client) is a failed try of
    that call, recorded; it never stops the others."""
    with engine.begin() as conn:
        due = list(
            conn.execute(
                sa.select(Delivery.id)
                .where(Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if due:
            conn.execute(
                sa.update(Delivery).where(Delivery.id.in_(due)).values(next_attempt_at=now + CLAIM)
            )
        rows = conn.execute(sa.select(Delivery).where(Delivery.id.in_(due))).all()
    arrived = 0
    for row in rows:
        status, error = _try(http, secret, row, allow_private)
        tries = row.attempts + 1
        done = error is None
        arrived += done
        count_webhook(done)
        if not done:
            log.warning(
                "webhook call failed (try %d of %d): %s",
                tries,
                MAX_TRIES,
                error,
                extra={"http_status": status},
            )
        later = (
            None
            if done or tries >= MAX_TRIES
            else now + timedelta(seconds=WEBHOOK_RETRY.delay(tries))
        )
        with engine.begin() as conn:
            conn.execute(
                sa.insert(DeliveryAttempt).values(
                    delivery_id=row.id, at=now, http_status=status, error=error
                )
            )
            conn.execute(
                sa.update(Delivery)
                .where(Delivery.id == row.id)
                .values(attempts=tries, next_attempt_at=later, delivered_at=now if done else None)
            )
    return arrived


def _try(
    http: httpx.Client, secret: Secret | None, row: Any, allow_private: bool
) -> tuple[int | None, str | None]:
    """One call: (HTTP status, error); any failure is an error of this try."""
    try:
        check_target(row.url, allow_private=allow_private)
        return _post(http, secret, row)  # (its host is checked as it connects)
    except VeoBatchError as exc:
        return None, str(exc)[:500]
    except Exception as exc:  # one bad call must not stop the others
        return None, f"{type(exc).__name__}: {exc}"[:500]


def _post(http: httpx.Client, secret: Secret | None, row: Any) -> tuple[int | None, str | None]:
    if secret is None:
        return None, "VEO_WEBHOOK_SECRET is not set: webhook calls are always signed"
    body = row.payload.encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "veo-batch",
        "X-Veo-Batch-Event": row.event,
        "X-Veo-Batch-Delivery": str(row.id),
        "X-Veo-Batch-Timestamp": str(timestamp),
        "X-Veo-Batch-Signature": sign(secret, timestamp, body),
    }
    import httpx  # noqa: PLC0415 - see the module's imports

    whole, connect = TIMEOUT
    try:
        timeout = httpx.Timeout(whole, connect=connect)
        response = http.post(row.url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"
