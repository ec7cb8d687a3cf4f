"""``qbconnect demo``: the whole product on one machine, with no accounts.

Starts the QuickBooks and HighLevel emulators, the service with its in-process worker (SQLite + SqliteHuey),
has an agency install the app in two CRM locations at once (a bulk install) and connects each to its own
demo QuickBooks company through the real OAuth flows, then plays live traffic on both: invoices sent,
edited, paid and voided; order-form, calendar, membership and subscription payments (renewals too) and
refunds; QuickBooks customers and payments that trigger review requests. The settings page shows it all as
it happens, also framed as the CRM shows it.
"""

from __future__ import annotations

import logging
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner

from qbconnect.db.models import Location
from qbconnect.demo_workflows import show_overdue_workflow
from qbconnect.logs import configure_logging
from qbconnect.sandbox.stack import Stack, start_stack

log = structlog.get_logger(__name__)

FIRST_NAMES = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kira", "Liam"]
LAST_NAMES = ["Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Khan", "Lopez"]
PRODUCTS = [
    ("Lawn care visit", "45.00"),
    ("Hedge trimming", "80.00"),
    ("Garden design", "250.00"),
    ("Leaf removal", "60.00"),
    ("Irrigation check", "95.50"),
    ("Fertiliser pack", "32.99"),
]
RECEIPT_SOURCES: list[tuple[str, str | None, bool]] = [
    ("funnel", "one_step_order_form", False),
    ("funnel", "two_step_order_form", False),
    ("funnel", "upsell", False),
    ("website", "store", False),
    ("calendar", "service", False),
    ("membership", None, False),
    ("funnel", "two_step_order_form", True),  # a subscription; it renews later
    ("payment_link", None, False),
]


class DemoTraffic:
    """Plays one random user action every ``interval`` seconds against the two emulators."""

    def __init__(self, stack: Stack, location_id: str, realm_id: str, *, seed: int | None = None) -> None:
        self.stack = stack
        self.location_id = location_id
        self.realm_id = realm_id
        self.rng = random.Random(seed)
        self.contacts: list[dict[str, Any]] = []
        self.open_invoices: list[str] = []
        self.subscriptions: list[str] = []
        self.transactions: list[str] = []
        self.qbo_customers: list[str] = []
        self.actions: list[tuple[int, Callable[[], str]]] = [
            (4, self.send_invoice),
            (3, self.pay_invoice),
            (1, self.edit_invoice),
            (1, self.void_invoice),
            (4, self.checkout),
            (1, self.renew_subscription),
            (1, self.refund),
            (2, self.qbo_customer),
            (2, self.qbo_first_invoice_paid),
        ]

    def step(self) -> str:
        weights = [w for w, _ in self.actions]
        action = self.rng.choices([a for _, a in self.actions], weights=weights)[0]
        try:
            return action()
        except IndexError:  # nothing to act on yet (no open invoice, no subscription, …)
            return f"skipped {action.__name__}: nothing to act on yet"
        except (ValueError, KeyError) as exc:  # the emulator refused the action (e.g. already paid)
            return f"skipped {action.__name__}: {exc}"

    # -- CRM side
    def _contact(self) -> dict[str, Any]:
        if self.contacts and self.rng.random() < 0.5:
            return self.rng.choice(self.contacts)
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{self.rng.randint(1, 9999)}@example.com".lower()
        contact = self.stack.crm.create_contact(
            self.location_id,
            firstName=first,
            lastName=last,
            email=email,
            phone=f"+1555{self.rng.randint(1000000, 9999999)}",
        )
        self.contacts.append(contact)
        return contact

    def _items(self, count: int | None = None) -> list[dict[str, Any]]:
        picks = self.rng.sample(PRODUCTS, k=count or self.rng.randint(1, 3))
        return [{"name": name, "amount": Decimal(price), "qty": self.rng.randint(1, 3)} for name, price in picks]

    def send_invoice(self) -> str:
        contact = self._contact()
        discount = None
        if self.rng.random() < 0.4:
            discount = {"type": "percentage", "value": self.rng.choice([5, 10, 15])}
        invoice = self.stack.crm.create_invoice(
            self.location_id, contact_id=str(contact["id"]), items=self._items(), discount=discount
        )
        self.stack.crm.send_invoice(invoice["_id"])
        self.open_invoices.append(invoice["_id"])
        return f"CRM invoice {invoice.get('invoiceNumber')} sent"

    def pay_invoice(self) -> str:
        invoice_id = self.rng.choice(self.open_invoices)
        due = Decimal(str(self.stack.crm.invoices[invoice_id]["amountDue"]))
        amount = due if self.rng.random() < 0.6 else (due / 2).quantize(Decimal("0.01"))
        self.stack.crm.record_invoice_payment(invoice_id, amount)
        if amount == due:
            self.open_invoices.remove(invoice_id)
        return f"CRM invoice {invoice_id} paid {amount}"

    def edit_invoice(self) -> str:
        invoice_id = self.rng.choice(self.open_invoices)
        self.stack.crm.update_invoice(invoice_id, discount={"type": "fixed", "value": Decimal("5.00")})
        return f"CRM invoice {invoice_id} got an extra discount"

    def void_invoice(self) -> str:
        invoice_id = self.rng.choice(self.open_invoices)
        self.stack.crm.void_invoice(invoice_id)
        self.open_invoices.remove(invoice_id)
        return f"CRM invoice {invoice_id} voided"

    def checkout(self) -> str:
        source_type, sub_type, subscription = self.rng.choice(RECEIPT_SOURCES)
        contact = self._contact()
        order = self.stack.crm.create_order(
            self.location_id,
            contact_id=str(contact["id"]),
            source_type=source_type,
            source_sub_type=sub_type,
            items=self._items(1),
            card_brand=self.rng.choice(["visa", "mastercard", "amex"]),
            subscription=subscription,
        )
        crm = self.stack.crm
        self.transactions.extend(str(t["_id"]) for t in crm.transactions.values() if t.get("entityId") == order["_id"])
        self.subscriptions.extend(sid for sid, sub in crm.subscriptions.items() if sub.get("entityId") == order["_id"])
        return f"{source_type}/{sub_type or '-'} payment"

    def renew_subscription(self) -> str:
        sub_id = self.rng.choice(self.subscriptions)
        txn = self.stack.crm.renew_subscription(sub_id)
        self.transactions.append(str(txn["_id"]))
        return f"subscription {sub_id} renewed (no webhook: found by polling)"

    def refund(self) -> str:
        txn_id = self.rng.choice(self.transactions)
        txn = self.stack.crm.transactions[txn_id]
        left = Decimal(str(txn["amount"])) - Decimal(str(txn["amountRefunded"]))
        amount = left if self.rng.random() < 0.5 else (left / 2).quantize(Decimal("0.01"))
        self.stack.crm.refund_transaction(txn_id, amount)
        self.transactions.remove(txn_id)
        return f"transaction {txn_id} refunded {amount}"

    # -- QuickBooks side
    def qbo_customer(self) -> str:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        n = self.rng.randint(1, 99999)
        customer = self.stack.qbo.ui_create(
            self.realm_id,
            "Customer",
            {
                "DisplayName": f"{first} {last} {n}",
                "GivenName": first,
                "FamilyName": last,
                "PrimaryEmailAddr": {"Address": f"{first}.{last}.{n}@example.org".lower()},
            },
        )
        self.qbo_customers.append(str(customer["Id"]))
        return f"QuickBooks customer {customer['DisplayName']} created"

    def qbo_first_invoice_paid(self) -> str:
        customer_id = self.rng.choice(self.qbo_customers)
        self.qbo_customers.remove(customer_id)
        items = self.stack.qbo.entities(self.realm_id, "Item")
        item = next(i for i in items if i.get("Type") == "Service")
        amount = self.rng.choice(["120.00", "75.50", "300.00"])  # the emulator's UI takes JSON values
        invoice = self.stack.qbo.ui_create(
            self.realm_id,
            "Invoice",
            {
                "CustomerRef": {"value": customer_id},
                "Line": [
                    {
                        "Amount": amount,
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 1, "UnitPrice": amount},
                    }
                ],
            },
        )
        self.stack.qbo.ui_create(
            self.realm_id,
            "Payment",
            {
                "CustomerRef": {"value": customer_id},
                "TotalAmt": amount,
                "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
            },
        )
        return f"QuickBooks invoice {invoice['Id']} paid in full (first invoice: review request)"


@dataclass(frozen=True)
class DemoInfo:
    """What the demo prints in its block: where to go and how to get in."""

    settings_url: str
    crm_page_url: str  # the same page as the CRM shows it: framed, signed in by the CRM user's context
    other_locations: list[tuple[str, str]]  # (name, settings URL) of the agency's other locations
    service_url: str
    admin_token: str
    location_id: str
    realm_id: str
    locations: list[tuple[str, str]]  # (location id, realm id) of every demo location
    qbo_url: str
    crm_url: str
    data_dir: Path
    log_file: Path


def default_log_file(port: int) -> Path:
    """Beside the temporary data folder, not in it: the log outlives the demo (the folder is removed)."""
    return Path(tempfile.gettempdir()) / f"qbconnect-demo-{port}.log"


def print_block(console: Console, info: DemoInfo) -> None:
    """The block that stays on screen: no borders, one value per line, so URLs and the token copy whole."""
    rows = [
        ("Settings page", info.settings_url),
        *[(f"Also: {name}", url) for name, url in info.other_locations],
        ("In the CRM", f"{info.crm_page_url} (the page framed by the CRM, signed in without a token)"),
        ("Admin token", info.admin_token),
        ("Log in at", f"{info.service_url}/login (paste the admin token)"),
        ("Health", f"{info.service_url}/healthz"),
        (
            "API",
            f"curl -H 'Authorization: Bearer {info.admin_token}' {info.service_url}/api/locations/{info.location_id}",
        ),
        ("Emulators", f"QuickBooks {info.qbo_url} · HighLevel {info.crm_url}"),
        ("Data", f"{info.data_dir} (removed when the demo stops)"),
        ("Log", f"{info.log_file} (requests, worker and demo traffic; kept after the demo stops)"),
    ]
    console.rule("[bold green]qbconnect demo is running[/bold green]")
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        console.print(f"  [bold]{name + ':':<{width}}[/bold]{value}", soft_wrap=True, highlight=False)
    console.rule("Ctrl-C to stop")


class _Stopped(BaseException):
    """SIGTERM (or SIGINT) asked the demo to stop."""


def _install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM stop the demo wherever it is (starting up too); later signals are ignored so the
    clean-up is not cut short. Returns a function that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return
        stop.set()
        raise _Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


@contextmanager
def _log_to(log_file: Path) -> Iterator[None]:
    """Every log line of this process (ours, uvicorn's, the worker's, uncaught thread errors) goes to the file
    while the demo runs; the terminal keeps the block."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    saved = sys.stderr
    with log_file.open("w", encoding="utf-8", buffering=1) as sink:
        sys.stderr = sink
        root = logging.getLogger()
        kept = list(root.handlers)
        for handler in kept:
            root.removeHandler(handler)
        try:
            configure_logging(json=True)  # binds the standard library's handlers to the file
            structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=sink))
            yield
        finally:
            sys.stderr = saved
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in kept:
                root.addHandler(handler)
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def run_demo(
    *,
    port: int = 8000,
    stop: threading.Event | None = None,
    interval: float = 3.0,
    log_file: Path | None = None,
    console: Console | None = None,
) -> None:
    """Run until ``stop`` is set, SIGINT (Ctrl-C) or SIGTERM; then stop everything and remove the data folder."""
    stop = stop or threading.Event()
    console = console or Console(soft_wrap=True)
    log_file = (log_file or default_log_file(port)).resolve()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch()  # the block and the goodbye line name it, however early the demo is stopped
    restore_signals = _install_stop_signals(stop)
    data_dir = Path(tempfile.mkdtemp(prefix="qbconnect-demo-"))
    stack: Stack | None = None
    failure: BaseException | None = None
    try:
        console.print(f"Starting the demo (log: {log_file}) …", highlight=False)
        with _log_to(log_file):
            try:
                stack = _start(port, data_dir)
                info = _connect_demo_location(stack, data_dir, log_file)
                print_block(console, info)
                _show_workflow(stack, info)
                _play(stack, info, stop, interval, console)
            except Exception as exc:  # the details go to the log; the terminal gets one line
                log.exception("demo.failed")
                failure = exc
            finally:
                stop.set()  # a signal from here on only waits for the clean-up
                if stack is not None:
                    stack.stop()
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        restore_signals()
    if failure is not None:
        console.print(
            f"[red]The demo stopped: {type(failure).__name__}: {failure}[/red] (details in {log_file})",
            highlight=False,
        )
        raise SystemExit(1)
    console.print(f"Demo stopped; {data_dir} removed. The log is kept at {log_file}.", highlight=False)


def _start(port: int, data_dir: Path) -> Stack:
    return start_stack(
        database_url=f"sqlite:///{data_dir / 'qbconnect.db'}",
        queue_url=f"sqlite:///{data_dir / 'queue.db'}",
        secret_key=secrets.token_urlsafe(32),
        admin_token=secrets.token_urlsafe(24),
        service_port=port,
        run_worker=True,
        settings_overrides={"reconcile_interval_seconds": 60.0, "sweep_interval_seconds": 2.0},
    )


DEMO_LOCATIONS = (
    ("Greenleaf Gardening", "Greenleaf Gardening LLC"),
    ("Greenleaf Landscaping", "Greenleaf Landscaping LLC"),
)


def _connect_demo_location(stack: Stack, data_dir: Path, log_file: Path) -> DemoInfo:
    """An agency (Greenleaf Group) installs the app in two locations at once; each connects its own
    QuickBooks company. The first is the one the block points at; traffic plays on both."""
    location_ids = stack.install_agency([name for name, _ in DEMO_LOCATIONS], company_id="greenleaf-group")
    realms = []
    for location_id, (_, company) in zip(location_ids, DEMO_LOCATIONS, strict=True):
        realm_id = stack.connect_quickbooks(location_id, name=company, country="US")
        stack.qbo.seed_customers(realm_id, 25)
        realms.append(realm_id)
        with stack.runtime.sessions.begin() as session:
            location = session.get(Location, location_id)
            if location is not None:
                location.settings = {
                    **(location.settings or {}),
                    "review_link": "https://g.page/r/greenleaf-demo/review",
                    "transaction_poll_minutes": 1,
                }
    stack.crm.start_webhook_delivery(0.2)
    stack.qbo.start_webhook_delivery(0.5)
    settings_url = f"{stack.service_url}/settings/integrations?location_id={{}}"
    return DemoInfo(
        settings_url=settings_url.format(location_ids[0]),
        crm_page_url=f"{stack.crm_url}/ui/locations/{location_ids[0]}/integrations",
        other_locations=[
            (name, settings_url.format(location_id))
            for location_id, (name, _) in zip(location_ids[1:], DEMO_LOCATIONS[1:], strict=True)
        ],
        service_url=stack.service_url,
        admin_token=stack.settings.secret("admin_token"),
        location_id=location_ids[0],
        realm_id=realms[0],
        locations=list(zip(location_ids, realms, strict=True)),
        qbo_url=stack.qbo_url,
        crm_url=stack.crm_url,
        data_dir=data_dir,
        log_file=log_file,
    )


def _show_workflow(stack: Stack, info: DemoInfo) -> None:
    """A CRM workflow on the "QuickBooks invoice overdue" trigger fires once (docs/workflows.md); what its
    target URL received goes to the log. A failure here is logged and the demo goes on."""
    try:
        received = show_overdue_workflow(stack, info.location_id, info.realm_id)
    except Exception:
        log.exception("demo.workflow_failed")
        return
    event = received.get("event") if isinstance(received, dict) else None
    log.info("demo.workflow_fired", trigger="QuickBooks invoice overdue", workflow_event=event)


def _play(stack: Stack, info: DemoInfo, stop: threading.Event, interval: float, console: Console) -> None:
    """Demo traffic until stopped: each action goes to the log; one status line under the block counts them
    (on a terminal only, so the block is never pushed away)."""
    players = [DemoTraffic(stack, location_id, realm_id) for location_id, realm_id in info.locations]
    played = 0
    spinner = Spinner("dots", text="Playing demo traffic …")
    # No stdout/stderr redirection: the log lines keep going to the file, never above the status line.
    with Live(spinner, console=console, transient=True, redirect_stdout=False, redirect_stderr=False):
        while not stop.wait(interval):
            outcome = players[played % len(players)].step()
            played += 1
            log.info("demo.action", outcome=outcome, played=played)
            spinner.update(text=f"Demo traffic: {played} actions played · last: {outcome}")
