"""Contacts from QuickBooks: CRM calls per contact, sustained CRM request rate, memory for a large import.

Three measurements, printed and written to ``bench/results/contacts.json``:

1. **Calls per contact** (goal ≤ 2 for new contacts, ≤ 1.2 for contacts that already carry the tag, 0 for
   unchanged ones): the whole product on this machine (both emulators + the service over loopback HTTP),
   one import per case, counting the CRM emulator's ``request_log``.
2. **Sustained rate** (goal ≥ 90 % of HighLevel's 10 requests/s, zero 429s): the same stack with the real
   limits on both sides (the emulator refuses over 100 requests per 10 s; the service's shared budget),
   importing new customers for about a minute. The rate is measured after the first 10 s window (which
   may burst) from the emulator's own timestamps; the busiest 10 s window is reported too.
3. **Memory** for a large import (goal: flat, under 200 MB): the import job itself, in this process,
   against in-process stand-ins for QuickBooks (customers generated page by page) and HighLevel (answers
   upserts without storing anything), so only the importer's memory counts. Resident memory is sampled
   after every page; ``ru_maxrss`` is the process peak.

    python -m bench contacts
    BENCH_CONTACTS_RATE=600 BENCH_CONTACTS_MEMORY=100000 python -m bench contacts
    BENCH_CONTACTS_PARTS=rate python -m bench contacts      # one part; the others' figures are kept
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
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
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.runtime import build_runtime
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.contacts import importer as contact_import
from qbconnect.sync.contacts.importer import CustomerImport, start_customer_import
from qbconnect.sync.contacts.state import IMPORT_KEY, read_setup
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext

CRM_LIMIT_PER_SECOND = 10.0


class NoLimit:
    def acquire(self, *args: object, **kwargs: object) -> None:
        return None

    def try_acquire(self, *args: object, **kwargs: object) -> bool:
        return True

    def penalize(self, *args: object, **kwargs: object) -> None:
        return None


def _connect(stack: Stack, name: str) -> tuple[str, str]:
    location_id = stack.install_crm_location(name=name)
    realm_id = stack.connect_quickbooks(location_id, name=f"{name} LLC", country="US")
    stack.drain()
    return location_id, realm_id


def _import(stack: Stack, location_id: str) -> tuple[dict[str, Any], list[Any], float]:
    start = len(stack.crm.request_log)
    began = time.monotonic()
    with stack.runtime.sessions.begin() as session:
        start_customer_import(session, location_id, "benchmark")
    stack.drain(timeout=3600)
    elapsed = time.monotonic() - began
    with stack.runtime.sessions() as session:
        location = session.get(Location, location_id)
        assert location is not None
        state = dict(location.state[IMPORT_KEY])
    requests = [r for r in stack.crm.request_log[start:] if r.location == location_id]
    return state, requests, elapsed


# ---- 1. calls per contact ------------------------------------------------------------------------------


def calls_per_contact(count: int) -> dict[str, Any]:
    with bench_stack(crm_options={"rate_limit": 1_000_000}) as stack:
        stack.runtime.limiter = NoLimit()  # type: ignore[assignment]
        results: dict[str, Any] = {}
        new_loc, new_realm = _connect(stack, "New Contacts")
        stack.qbo.seed_customers(new_realm, count)
        state, requests, _ = _import(stack, new_loc)
        results["new"] = {
            "contacts": state["created"],
            "calls": len(requests),
            "calls_per_contact": len(requests) / count,
        }

        tagged_loc, tagged_realm = _connect(stack, "Tagged Contacts")
        stack.qbo.seed_customers(tagged_realm, count, start=100_001)
        with stack.crm.lock:
            for n in range(100_001, 100_001 + count):
                stack.crm.new_contact(tagged_loc, {"email": f"customer{n}@example.com", "tags": ["quickbooks", "vip"]})
        state, requests, _ = _import(stack, tagged_loc)
        results["existing_tagged"] = {
            "contacts": state["updated"],
            "calls": len(requests),
            "calls_per_contact": len(requests) / count,
        }

        state, requests, _ = _import(stack, tagged_loc)  # "Import now" again: nothing changed
        results["unchanged"] = {
            "contacts": state["unchanged"],
            "calls": len(requests),
            "calls_per_contact": len(requests) / count,
        }
        return results


# ---- 2. sustained rate against the real limit --------------------------------------------------------


def sustained_rate(count: int) -> dict[str, Any]:
    with bench_stack() as stack:  # real limits: emulator 100 per 10 s, service's shared budget
        location_id, realm_id = _connect(stack, "Rate Co")
        stack.qbo.seed_customers(realm_id, count)
        state, requests, elapsed = _import(stack, location_id)
    times = sorted(r.at.timestamp() for r in requests)
    statuses = Counter(r.status for r in requests)
    first, last = times[0], times[-1]
    after_burst = [t for t in times if t >= first + 10.0]
    sustained = (len(after_burst) - 1) / (after_burst[-1] - after_burst[0]) if len(after_burst) > 1 else 0.0
    overall = (len(times) - 1) / (last - first) if last > first else 0.0
    busiest, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 10.0:
            lo += 1
        busiest = max(busiest, hi - lo + 1)
    return {
        "customers": count,
        "crm_requests": len(times),
        "responses_429": statuses.get(429, 0),
        "seconds": round(last - first, 1),
        "import_seconds": round(elapsed, 1),
        "overall_rate": round(overall, 2),
        "sustained_rate": round(sustained, 2),
        "sustained_share_of_limit": round(sustained / CRM_LIMIT_PER_SECOND, 3),
        "busiest_10s_window": busiest,
        "import_state_rate_customers_per_s": state.get("rate"),
    }


# ---- 3. memory for a large import ---------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        if request.url.path.endswith("/tags"):
            return httpx.Response(201, json={"tags": ["quickbooks"]})
        fields = json.loads(request.content)
        contact = {"id": "c" + fields.get("email", "x").split("@")[0], "tags": ["quickbooks"], **fields}
        return httpx.Response(200, json={"new": False, "contact": contact})

    return httpx.MockTransport(answer)


class _StaticCrmTokens:
    def access_token(self) -> str:
        return "token"

    def force_refresh(self, rejected_token: str) -> str:
        return "token"


def memory(count: int) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
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
            importer = CustomerImport(ctx, setup, qbo, crm, limiter=None)
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
        "seconds": round(elapsed, 1),
        "rss_mb_at_10_percent": round(tenth, 1),
        "rss_mb_at_end": round(final, 1),
        "rss_growth_mb_after_10_percent": round(final - tenth, 1),
        "peak_rss_mb": round(max(_maxrss_mb(), *(rss for _, rss in samples)), 1),
        "page_size": contact_import.PAGE_SIZE,
    }


def main() -> None:
    sys.setswitchinterval(0.0005)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    per_contact = int(os.environ.get("BENCH_CONTACTS_CALLS", "300"))
    rate_customers = int(os.environ.get("BENCH_CONTACTS_RATE", "300"))
    memory_customers = int(os.environ.get("BENCH_CONTACTS_MEMORY", "100000"))
    parts = os.environ.get("BENCH_CONTACTS_PARTS", "memory,calls,rate").split(",")
    path = RESULTS / "contacts.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if "memory" in parts:  # first, so the process peak is the importer's, not the emulators'
        results["memory"] = memory(memory_customers)
        mem = results["memory"]
        print(
            f"memory: {memory_customers} customers in {mem['seconds']}s; resident {mem['rss_mb_at_10_percent']} MB "
            f"at 10% → {mem['rss_mb_at_end']} MB at the end; peak {mem['peak_rss_mb']} MB",
            flush=True,
        )
    if "calls" in parts:
        results["calls_per_contact"] = calls_per_contact(per_contact)
        for case, row in results["calls_per_contact"].items():
            print(f"calls per contact, {case:<16}{row['calls_per_contact']:>6.2f}  ({row['calls']} calls)", flush=True)
    if "rate" in parts:
        results["rate"] = sustained_rate(rate_customers)
        rate = results["rate"]
        print(
            f"rate: {rate['crm_requests']} CRM requests in {rate['seconds']}s; sustained {rate['sustained_rate']} "
            f"req/s = {rate['sustained_share_of_limit']:.0%} of 10 req/s; busiest 10 s window "
            f"{rate['busiest_10s_window']}; 429s: {rate['responses_429']}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
