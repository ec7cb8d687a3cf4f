"""``QboSandbox``: the whole emulated QuickBooks Online (companies, OAuth, faults, webhooks), one lock."""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from . import faults, webhooks
from .clock import utcnow
from .company import Change, Company
from .entities import ALL, BY_PATH
from .oauth import CODE_TTL, HARD_EXPIRY, Code, Grant, OAuthError, new_token
from .seed import seed_company

FAULT_KINDS = ("429", "500", "503", "timeout", "latency", "lost_response", "401")
_realm_numbers = itertools.count(1)


@dataclass
class RequestRecord:
    """One API request as the emulator saw it."""

    method: str
    path: str
    realm_id: str | None
    entity: str | None
    operation: str
    status: int
    request_id: str | None = None
    at: datetime = field(default_factory=utcnow)

    @property
    def kind(self) -> str:
        """``read`` (GET, query, CDC: what Intuit meters), ``write`` (POST writes and batches) or ``oauth``."""
        if "/v3/" not in self.path:
            return "oauth"
        if self.method == "GET" or self.operation.split(":")[0] in ("query", "cdc", "read"):
            return "read"
        return "write"


@dataclass
class FaultRule:
    kind: str
    count: int
    realm_id: str | None = None
    method: str | None = None
    entity: str | None = None
    latency: float = 0.0

    def matches(self, realm_id: str | None, method: str, entity: str | None) -> bool:
        return (
            (self.realm_id is None or self.realm_id == realm_id)
            and (self.method is None or self.method.upper() == method.upper())
            and (self.entity is None or (entity is not None and self.entity.lower() == entity.lower()))
        )


@dataclass
class DeliveredWebhook:
    url: str
    body: bytes
    signature: str
    status: int | None


class QboSandbox:
    """Thread-safe in-memory QuickBooks Online: see docs/sandbox.md."""

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",  # noqa: S107
        verifier_token: str = "sandbox-verifier",  # noqa: S107
        access_token_ttl: int = 3600,
        refresh_token_ttl: int = 8726400,
        webhook_url: str | None = None,
        webhook_format: str = "cloudevents",
        auto_approve: bool = True,
        throttle_per_minute: int = 500,
        concurrent_per_realm: int | None = 10,
        batch_per_minute: int | None = 40,
        throttle_per_second: int | None = None,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        retry_after: int | None = None,
    ) -> None:
        if webhook_format not in ("cloudevents", "legacy"):
            raise ValueError("webhook_format must be 'cloudevents' or 'legacy'")
        self.client_id = client_id
        self.client_secret = client_secret
        self.verifier_token = verifier_token
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.webhook_url = webhook_url
        self.webhook_format = webhook_format
        self.auto_approve = auto_approve
        # Intuit's limits per realm (and app: the emulator serves one app): requests per sliding minute,
        # requests in flight, batch requests per minute; per second only when set (see docs/sandbox.md).
        self.throttle_per_minute = throttle_per_minute
        self.concurrent_per_realm = concurrent_per_realm
        self.batch_per_minute = batch_per_minute
        self.throttle_per_second = throttle_per_second
        # Seconds each API request takes (uniform in latency ± latency_jitter), spent holding its slot.
        self.latency = latency
        self.latency_jitter = latency_jitter
        # Intuit documents no Retry-After on its 429; set this to have the emulator send one anyway.
        self.retry_after = retry_after
        self.throttle_log: list[tuple[str, str]] = []  # (realm, which limit) per refused request
        self._in_flight: Counter[str] = Counter()
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self.ticks: Callable[[], float] = time.monotonic  # the limits' clock (tests move it)
        self.lock = threading.RLock()
        self.clock: Callable[[], datetime] = utcnow
        self.companies: dict[str, Company] = {}
        self.next_realm_id: str | None = None
        self.request_log: list[RequestRecord] = []
        self.delivered_webhooks: list[DeliveredWebhook] = []
        self._faults: list[FaultRule] = []
        self._codes: dict[str, Code] = {}
        self._refresh: dict[str, Grant] = {}
        self._access: dict[str, Grant] = {}
        self._pending: list[Change] = []
        self._delivery: threading.Thread | None = None
        self._stop = threading.Event()
        self._source = "intuit." + new_token("")[:43]

    # ------------------------------------------------------------------ companies
    def now(self) -> datetime:
        return self.clock()

    def add_company(
        self,
        realm_id: str | None = None,
        *,
        name: str = "Sandbox Company US",
        country: str = "US",
        home_currency: str = "USD",
        custom_txn_numbers: bool = False,
        multicurrency: bool = False,
    ) -> str:
        with self.lock:
            if realm_id is None:
                while True:
                    realm_id = f"93414556{next(_realm_numbers):08d}"
                    if realm_id not in self.companies:
                        break
            if realm_id in self.companies:
                raise ValueError(f"company {realm_id} exists")
            company = Company(realm_id, name, country.upper(), home_currency.upper(), clock=self.now)
            seed_company(company, custom_txn_numbers=custom_txn_numbers, multicurrency=multicurrency)
            company.changes.clear()
            self.companies[realm_id] = company
            return realm_id

    def company(self, realm_id: str) -> Company:
        company = self.companies.get(realm_id)
        if company is None:
            raise KeyError(f"no company {realm_id}")
        return company

    def seed_customers(self, realm_id: str, count: int, *, with_email: bool = True, start: int = 1) -> None:
        with self.lock:
            company = self.company(realm_id)
            currency = {"value": company.home_currency, "name": company.home_currency}
            for n in range(start, start + count):
                name = f"Customer {n:06d}"
                if name.casefold() in company.names:
                    raise ValueError(f"{name} exists")
                obj: dict[str, Any] = {
                    "GivenName": "Customer",
                    "FamilyName": f"{n:06d}",
                    "FullyQualifiedName": name,
                    "DisplayName": name,
                    "PrintOnCheckName": name,
                    "Active": True,
                    "PrimaryPhone": {"FreeFormNumber": f"(555) {n // 10000 % 1000:03d}-{n % 10000:04d}"},
                    "Taxable": False,
                    "Job": False,
                    "BillWithParent": False,
                    "Balance": 0,
                    "BalanceWithJobs": 0,
                    "CurrencyRef": dict(currency),
                }
                if with_email:
                    obj["PrimaryEmailAddr"] = {"Address": f"customer{n}@example.com"}
                company.insert("Customer", obj)

    def entities(self, realm_id: str, entity: str) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.company(realm_id).iter(_entity(entity))))

    def get(self, realm_id: str, entity: str, id: str) -> dict[str, Any]:
        with self.lock:
            return self.company(realm_id).read(_entity(entity), str(id))

    # ------------------------------------------------------------------ user actions in the QBO UI
    def ui_create(self, realm_id: str, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            company = self.company(realm_id)
            result = company.create(_entity(entity), body)
            self._collect(company)
            return result

    def ui_update(self, realm_id: str, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            company = self.company(realm_id)
            name = _entity(entity)
            current = company.read(name, str(body["Id"]))
            sparse = {**body, "SyncToken": current["SyncToken"], "sparse": True}
            result = company.update(name, sparse)
            self._collect(company)
            return result

    def ui_merge_customers(self, realm_id: str, from_id: str, into_id: str) -> None:
        with self.lock:
            company = self.company(realm_id)
            company.merge_customers(str(from_id), str(into_id))
            self._collect(company)

    def _collect(self, company: Company) -> None:
        self._pending.extend(company.changes)
        company.changes.clear()

    # ------------------------------------------------------------------ faults
    def inject_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        realm_id: str | None = None,
        method: str | None = None,
        entity: str | None = None,
        latency: float = 0.0,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self.lock:
            self._faults.append(FaultRule(kind, count, realm_id, method, entity, latency))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, realm_id: str | None, method: str, entity: str | None) -> FaultRule | None:
        with self.lock:
            for rule in self._faults:
                if rule.count > 0 and rule.matches(realm_id, method, entity):
                    rule.count -= 1
                    if rule.count == 0:
                        self._faults.remove(rule)
                    return rule
            return None

    def admit(self, realm_id: str, *, batch: bool = False) -> str | None:
        """Count one API request of ``realm_id`` in; the limit it breaks (then nothing is counted) or None.

        Every admitted request must be followed by :meth:`leave` when it is answered.
        """
        with self.lock:
            now = self.ticks()
            windows: list[tuple[str, int | None, float]] = [("per_minute", self.throttle_per_minute, 60.0)]
            windows.append(("per_second", self.throttle_per_second, 1.0))
            if batch:
                windows.append(("batch_per_minute", self.batch_per_minute, 60.0))
            for name, limit, span in windows:
                if limit is None:
                    continue
                recent = self._recent.setdefault((realm_id, name), deque())
                while recent and now - recent[0] >= span:
                    recent.popleft()
                if len(recent) >= limit:
                    self.throttle_log.append((realm_id, name))
                    return name
            if self.concurrent_per_realm is not None and self._in_flight[realm_id] >= self.concurrent_per_realm:
                self.throttle_log.append((realm_id, "concurrent"))
                return "concurrent"
            for name, limit, _span in windows:
                if limit is not None:
                    self._recent[(realm_id, name)].append(now)
            self._in_flight[realm_id] += 1
            return None

    def leave(self, realm_id: str) -> None:
        with self.lock:
            self._in_flight[realm_id] -= 1

    def in_flight(self, realm_id: str) -> int:
        with self.lock:
            return self._in_flight[realm_id]

    def serve_time(self) -> float:
        """How long the request being served takes (``latency`` ± ``latency_jitter``, at least 0)."""
        if self.latency <= 0 and self.latency_jitter <= 0:
            return 0.0
        return max(0.0, self.latency + random.uniform(-self.latency_jitter, self.latency_jitter))

    def request_counts(self, realm_id: str | None = None, *, since: int = 0) -> Counter[str]:
        """Requests by :attr:`RequestRecord.kind` (read/write/oauth) from ``request_log[since:]``."""
        with self.lock:
            return Counter(r.kind for r in self.request_log[since:] if realm_id is None or r.realm_id == realm_id)

    # ------------------------------------------------------------------ OAuth
    def default_realm(self) -> str:
        with self.lock:
            if self.next_realm_id is not None:
                return self.next_realm_id
            if not self.companies:
                return self.add_company()
            return next(iter(self.companies))

    def issue_code(self, client_id: str, redirect_uri: str, scope: str, realm_id: str) -> str:
        with self.lock:
            self.company(realm_id)
            code = new_token("AB11")
            grant = Grant(client_id, realm_id, scope, created=self.now())
            self._codes[code] = Code(grant, redirect_uri, self.now() + CODE_TTL)
            return code

    def client_ok(self, credentials: tuple[str, str] | None) -> bool:
        return credentials == (self.client_id, self.client_secret)

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        with self.lock:
            entry = self._codes.pop(code, None)
            if entry is None or entry.expires < self.now() or entry.redirect_uri != redirect_uri:
                raise OAuthError(400, "invalid_grant")
            return self._issue(entry.grant)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self.lock:
            grant = self._refresh.pop(refresh_token, None)
            if grant is None or grant.revoked or (grant.refresh_expires and grant.refresh_expires < self.now()):
                raise OAuthError(400, "invalid_grant", "Incorrect or invalid refresh token")
            if self.now() - grant.created > HARD_EXPIRY:
                raise OAuthError(400, "invalid_grant", "Refresh token has reached its maximum lifetime")
            return self._issue(grant)

    def _issue(self, grant: Grant) -> dict[str, Any]:
        now = self.now()
        access = new_token("eyJ")
        grant.access_tokens[access] = now + timedelta(seconds=self.access_token_ttl)
        self._access[access] = grant
        grant.refresh_token = new_token("RT1-")
        grant.refresh_expires = now + timedelta(seconds=self.refresh_token_ttl)
        self._refresh[grant.refresh_token] = grant
        hard = int((grant.created + HARD_EXPIRY - now).total_seconds())
        return {
            "token_type": "bearer",
            "expires_in": self.access_token_ttl,
            "refresh_token": grant.refresh_token,
            "x_refresh_token_expires_in": self.refresh_token_ttl,
            "access_token": access,
            "_hard": hard,
        }

    def revoke(self, token: str) -> None:
        with self.lock:
            grant = self._refresh.get(token) or self._access.get(token)
            if grant is not None:
                self._revoke_grant(grant)

    def _revoke_grant(self, grant: Grant) -> None:
        grant.revoked = True
        self._refresh.pop(grant.refresh_token, None)
        for access in grant.access_tokens:
            self._access.pop(access, None)
        grant.access_tokens.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            past = self.now() - timedelta(seconds=1)
            for grant in set(self._access.values()):
                for access in grant.access_tokens:
                    grant.access_tokens[access] = past

    def revoke_all(self) -> None:
        with self.lock:
            for grant in {*self._access.values(), *self._refresh.values()}:
                self._revoke_grant(grant)

    def authenticate(self, realm_id: str, authorization: str | None) -> None:
        """Raise the 401 (3200) or 403 (3100) fault QBO answers for a bad bearer token."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise faults.authentication_failed("Authorization header missing or not a Bearer token")
        token = authorization[7:].strip()
        with self.lock:
            grant = self._access.get(token)
            expires = grant.access_tokens.get(token) if grant else None
            if grant is None or expires is None or grant.revoked:
                raise faults.authentication_failed("Token invalid")
            if expires <= self.now():
                raise faults.authentication_failed("Token expired")
            if grant.realm_id != realm_id:
                raise faults.authorization_failed(f"The token is not authorized for company {realm_id}")

    # ------------------------------------------------------------------ webhooks
    def pending_webhooks(self) -> int:
        with self.lock:
            self._collect_all()
            return len(self._pending)

    def _collect_all(self) -> None:
        for company in self.companies.values():
            self._collect(company)

    def webhook_payload(self, changes: list[Change]) -> Any:
        if self.webhook_format == "legacy":
            return webhooks.legacy_payload(changes)
        return webhooks.cloudevents_payload(changes, self._source)

    def flush_webhooks(self, *, drop: bool = False) -> int:
        """POST queued events to ``webhook_url`` in one signed request; returns how many left the queue."""
        with self.lock:
            self._collect_all()
            batch = self._pending[: webhooks.MAX_CLOUDEVENTS_PER_POST]
            if drop:
                self._pending = self._pending[len(batch) :]
                return len(batch)
            if not batch or self.webhook_url is None:
                return 0
            body = webhooks.encode(self.webhook_payload(batch))
            url = self.webhook_url
        signature = webhooks.sign(self.verifier_token, body)
        status: int | None = None
        try:
            response = httpx.post(
                url,
                content=body,
                headers={"content-type": "application/json", "intuit-signature": signature},
                timeout=10.0,
            )
            status = response.status_code
        except httpx.HTTPError:
            status = None
        with self.lock:
            self.delivered_webhooks.append(DeliveredWebhook(url, body, signature, status))
            if status != 200:
                return 0  # Intuit retries anything but 200: the events stay queued
            sent = {id(c) for c in batch}
            self._pending = [c for c in self._pending if id(c) not in sent]
            return len(batch)

    def start_webhook_delivery(self, interval: float = 0.2) -> None:
        if self._delivery is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                self.flush_webhooks()

        self._delivery = threading.Thread(target=loop, name="qbo-sandbox-webhooks", daemon=True)
        self._delivery.start()

    def stop_webhook_delivery(self) -> None:
        if self._delivery is None:
            return
        self._stop.set()
        self._delivery.join(timeout=10)
        self._delivery = None

    def collect_changes(self, company: Company) -> None:
        with self.lock:
            self._collect(company)


def _entity(name: str) -> str:
    canonical = BY_PATH.get(name.lower())
    if canonical is None or canonical not in ALL:
        raise KeyError(f"unknown entity {name}")
    return canonical
