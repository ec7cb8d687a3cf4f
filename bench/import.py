# ruff: noqa: N999  (the module is named by its command: python -m bench import)
"""The contact import against HighLevel's real limit: seconds, CRM calls per contact, 429s, memory.

Printed, and written to ``bench/results/import.json``:

1. **Imports** (the goal for 230 customers: ≤ 30 s = 1.3x the platform's limit, ≤ 1.1 CRM calls per new contact,
   ≤ 0.05 per existing contact that already holds our fields and tag, zero 429s): the whole product on this
   machine (both emulators + the service over loopback HTTP), the CRM emulator counting 100 requests per 10 s
   per location in a sliding window and answering after a configurable latency, the product pacing itself with
   its own shared budget. For each size, an empty location and one that already holds half the customers as
   contacts (nine in ten with the tag, the rest without). The platform's limit is the time one call per new
   contact takes at 100 calls per 10 s (230 new contacts: 23 s); the ratio is the import's seconds over it.
   Calls are counted from the emulator's request record: per new contact (creates), per existing contact
   (search pages, upserts, tag calls: everything else).
2. **Memory** of a large import (goal: flat): the import job itself, in this process, against in-process
   stand-ins for QuickBooks (customers generated page by page) and HighLevel (an empty location that answers
   creates without storing anything), so only the importer's memory counts. Resident memory is sampled after
   every page; ``ru_maxrss`` is the process peak.

    python -m bench import
    BENCH_IMPORT_SIZES=230 BENCH_IMPORT_PARTS=imports python -m bench import     # quick
    BENCH_IMPORT_LATENCY=0.05,0.25 BENCH_IMPORT_MEMORY=100000 python -m bench import
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import structlog

from bench._common import RESULTS, SECRET, bench_stack
from qbconnect.config import Settings
from qbconnect.crm.client import CrmClient
from qbconnect.db.migrate import upgrade
from qbconnect.db.models import Location
from qbconnect.domain.customer import contact_fields_from_qbo_customer
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.runtime import build_runtime
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.contacts import importer as contact_import
from qbconnect.sync.contacts.importer import CustomerImport, start_customer_import
from qbconnect.sync.contacts.state import IMPORT_KEY, read_setup
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext

PLATFORM_LIMIT = 100  # HighLevel: requests per location per 10 s
PLATFORM_WINDOW = 10.0
TAG = "quickbooks"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Sampler:
    """Resident memory every half second while an import runs."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self.start = self.peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


# ---- 1. imports against the real limit ------------------------------------------------------------------


def _connect(stack: Stack, name: str) -> tuple[str, str]:
    location_id = stack.install_crm_location(name=name)
    realm_id = stack.connect_quickbooks(location_id, name=f"{name} LLC", country="US")
    stack.drain()
    return location_id, realm_id


def _half_filled(stack: Stack, location_id: str, realm_id: str) -> tuple[int, int]:
    """Half the customers already hold a contact with our fields: nine in ten tagged, the rest not."""
    customers = sorted(stack.qbo.entities(realm_id, "Customer"), key=lambda c: int(c["Id"]))
    existing = customers[: len(customers) // 2]
    untagged = 0
    with stack.crm.lock:
        for n, customer in enumerate(existing):
            fields = dict(contact_fields_from_qbo_customer(customer))
            tags = ["vip"] if n % 10 == 9 else [TAG, "vip"]
            untagged += TAG not in tags
            stack.crm.new_contact(location_id, {**fields, "tags": tags})
    return len(existing), untagged


def _endpoint(path: str) -> str:
    if path.endswith("/tags"):
        return "tags"
    return {
        "/contacts/search": "search",
        "/contacts/search/duplicate": "duplicate",
        "/contacts/upsert": "upsert",
        "/contacts/": "create",
    }.get(path, "other")


def one_import(count: int, *, half_filled: bool, latency: tuple[float, float]) -> dict[str, Any]:
    with bench_stack(crm_options={"latency": latency}) as stack:  # HighLevel's 100 per 10 s, the real pacing
        location_id, realm_id = _connect(stack, "Import Co")
        stack.qbo.seed_customers(realm_id, count)
        existing, untagged = _half_filled(stack, location_id, realm_id) if half_filled else (0, 0)
        new = count - existing
        start = len(stack.crm.request_log)
        with _Sampler() as memory:
            began = time.monotonic()
            with stack.runtime.sessions.begin() as session:
                start_customer_import(session, location_id, "benchmark")
            stack.drain(timeout=7200)
            elapsed = time.monotonic() - began
        with stack.runtime.sessions() as session:
            location = session.get(Location, location_id)
            assert location is not None
            state = dict(location.state[IMPORT_KEY])
        requests = [r for r in stack.crm.request_log[start:] if r.location == location_id]
        contacts = len(stack.crm.contacts(location_id))
    by_endpoint = Counter(_endpoint(r.path) for r in requests)
    statuses = Counter(r.status for r in requests)
    times = sorted(r.at.timestamp() for r in requests)
    busiest, low = 0, 0
    for high, moment in enumerate(times):
        while times[low] <= moment - PLATFORM_WINDOW:
            low += 1
        busiest = max(busiest, high - low + 1)
    limit_seconds = new * PLATFORM_WINDOW / PLATFORM_LIMIT  # one call per new contact at the platform's rate
    existing_calls = len(requests) - by_endpoint["create"]
    return {
        "customers": count,
        "location": "half-filled" if half_filled else "empty",
        "new_contacts": new,
        "existing_contacts": existing,
        "existing_without_tag": untagged,
        "contacts_after": contacts,
        "state": {k: state.get(k) for k in ("created", "updated", "unchanged", "skipped", "failed", "crm_calls")},
        "seconds": round(elapsed, 1),
        "platform_limit_seconds": round(limit_seconds, 1),
        "ratio_to_limit": round(elapsed / limit_seconds, 2) if limit_seconds else None,
        "crm_requests": len(requests),
        "requests_by_endpoint": dict(by_endpoint),
        "calls_per_new_contact": round(by_endpoint["create"] / new, 3) if new else None,
        "calls_per_existing_contact": round(existing_calls / existing, 3) if existing else None,
        # A contact that holds our fields and the tag costs only its share of the search pages (nothing else is
        # sent for it: no upsert, no tag call, as requests_by_endpoint shows).
        "calls_per_unchanged_tagged_contact": round(by_endpoint["search"] / existing, 3) if existing else None,
        "responses_429": statuses.get(429, 0),
        "busiest_10s_window": busiest,
        "rss_mb_start": round(memory.start, 1),
        "rss_mb_peak": round(memory.peak, 1),
        "latency_seconds": list(latency),
    }


# ---- 2. memory of a large import ------------------------------------------------------------------------


def _fake_customer(n: int) -> dict[str, Any]:
    return {
        "Id": str(n),
        "DisplayName": f"Customer {n:06d}",
        "GivenName": "Customer",
        "FamilyName": f"{n:06d}",
        "Active": True,
        "PrimaryEmailAddr": {"Address": f"customer{n}@example.com"},
        "PrimaryPhone": {"FreeFormNumber": f"(555) {n // 10000 % 1000:03d}-{n % 10000:04d}"},
        "BillAddr": {"Line1": f"{n} Main St", "City": "Springfield", "PostalCode": "62701"},
        "MetaData": {"CreateTime": "2026-01-01T00:00:00-08:00", "LastUpdatedTime": "2026-01-01T00:00:00-08:00"},
    }


def _qbo_transport(total: int) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlparse(str(request.url)).query).get("query", [""])[0]
        if "COUNT(*)" in query:
            return httpx.Response(200, json={"QueryResponse": {"totalCount": total}, "time": "2026-01-01T00:00:00Z"})
        words = query.split()
        start = int(words[words.index("STARTPOSITION") + 1])
        size = int(words[words.index("MAXRESULTS") + 1])
        page = [_fake_customer(n) for n in range(start, min(total, start + size - 1) + 1)]
        body: dict[str, Any] = {"QueryResponse": {"Customer": page, "startPosition": start, "maxResults": len(page)}}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(answer)


def _crm_transport() -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/contacts/search":
            return httpx.Response(200, json={"contacts": [], "total": 0})
        fields = json.loads(request.content)
        contact = {"id": "c" + fields.get("email", "x").split("@")[0], **fields}
        return httpx.Response(201, json={"contact": contact})

    return httpx.MockTransport(answer)


class _StaticCrmTokens:
    def access_token(self) -> str:
        return "token"

    def force_refresh(self, rejected_token: str) -> str:
        return "token"


def memory(count: int) -> dict[str, Any]:
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/memory.db"
        upgrade(url)
        settings = Settings(database_url=url, secret_key=SECRET, admin_token="x", _env_file=None)  # type: ignore[call-arg]
        runtime = build_runtime(settings)
        try:
            with runtime.sessions.begin() as session:
                session.add(Location(id="loc-mem", name="Memory Co"))
                job_id = jobs.enqueue(session, "loc-mem", "customer_import", "all", "benchmark")
            with runtime.sessions.begin() as session:
                jobs.claim(session, job_id, "bench", 3600)
            session = runtime.sessions()
            ctx = JobContext(
                runtime=runtime,
                session=session,
                job_id=job_id,
                location_id="loc-mem",
                kind="customer_import",
                entity_id="all",
                reason="benchmark",
                attempt=1,
                owner="bench",
                log=structlog.get_logger("bench"),
            )
            setup = read_setup(session, "loc-mem")
            setup = type(setup)(**{**setup.__dict__, "syncing": True, "realm_id": "r-mem"})
            qbo = QboClient(
                realm_id="r-mem",
                api_base="http://qbo.invalid",
                tokens=StaticTokenSource("token"),
                http=httpx.Client(transport=_qbo_transport(count)),
            )
            crm = CrmClient(
                location_id="loc-mem",
                api_base="http://crm.invalid",
                tokens=_StaticCrmTokens(),
                http=httpx.Client(transport=_crm_transport()),
            )
            importer = CustomerImport(ctx, setup, qbo, crm)
            original_save = importer._save

            def save_and_sample() -> None:
                original_save()
                samples.append((importer.progress.done, _rss_mb()))

            importer._save = save_and_sample  # type: ignore[method-assign]
            began = time.monotonic()
            importer.run()
            elapsed = time.monotonic() - began
            session.close()
            progress = importer.progress
        finally:
            runtime.close()
    tenth = next((rss for done, rss in samples if done >= count // 10), samples[0][1])
    final = samples[-1][1]
    return {
        "customers": count,
        "imported": progress.done,
        "crm_calls": progress.crm_calls,
        "seconds": round(elapsed, 1),
        "rss_mb_at_10_percent": round(tenth, 1),
        "rss_mb_at_end": round(final, 1),
        "rss_growth_mb_after_10_percent": round(final - tenth, 1),
        "peak_rss_mb": round(max(_maxrss_mb(), *(rss for _, rss in samples)), 1),
        "page_size": contact_import.PAGE_SIZE,
    }


def _print_import(row: dict[str, Any]) -> None:
    per_new = row["calls_per_new_contact"]
    per_existing = row["calls_per_existing_contact"]
    print(
        f"import {row['customers']:>6} into {row['location']:<11}: {row['seconds']:>7.1f} s "
        f"(limit {row['platform_limit_seconds']:.1f} s at 1 call/new contact, ratio {row['ratio_to_limit']}); "
        f"calls/new {per_new if per_new is not None else '-'}, calls/existing "
        f"{per_existing if per_existing is not None else '-'} (tagged and unchanged: "
        f"{row['calls_per_unchanged_tagged_contact'] or '-'}); 429s {row['responses_429']}; busiest 10 s "
        f"{row['busiest_10s_window']}/{PLATFORM_LIMIT}; peak RSS {row['rss_mb_peak']} MB "
        f"(from {row['rss_mb_start']})",
        flush=True,
    )


def main() -> None:
    sys.setswitchinterval(0.0005)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    sizes = [int(s) for s in os.environ.get("BENCH_IMPORT_SIZES", "230,10000").split(",") if s]
    low, _, high = os.environ.get("BENCH_IMPORT_LATENCY", "0.05,0.25").partition(",")
    latency = (float(low), float(high or low))
    memory_customers = int(os.environ.get("BENCH_IMPORT_MEMORY", "100000"))
    parts = os.environ.get("BENCH_IMPORT_PARTS", "memory,imports").split(",")
    path = RESULTS / "import.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if "memory" in parts:  # first, so the process peak is the importer's, not the emulators'
        results["memory"] = memory(memory_customers)
        mem = results["memory"]
        print(
            f"memory: {memory_customers} customers in {mem['seconds']}s; resident {mem['rss_mb_at_10_percent']} MB "
            f"at 10% → {mem['rss_mb_at_end']} MB at the end; peak {mem['peak_rss_mb']} MB",
            flush=True,
        )
    if "imports" in parts:
        imports = results.setdefault("imports", {})
        for size in sizes:
            for half in (False, True):
                row = one_import(size, half_filled=half, latency=latency)
                imports[f"{size}-{row['location']}"] = row
                _print_import(row)
                RESULTS.mkdir(exist_ok=True)
                path.write_text(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
