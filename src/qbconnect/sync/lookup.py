"""Find-or-create the QuickBooks list objects a CRM transaction needs: customer, items, payment method,
the Undeposited Funds account. Used by the invoice and sales-receipt handlers.

Every answer is cached per QuickBooks company in the link table, through the link repository
(``sync/links/customers.py`` and ``sync/links/lists.py``), so once a customer or item is known a job spends
no QuickBooks call on it. Link rows written here:

| kind             | crm_id                                   | qbo_id          | notes                         |
|------------------|------------------------------------------|-----------------|-------------------------------|
| ``customer``     | CRM contact id (``email:<address>`` when the contact has none) | Customer Id | ``email`` set |
| ``item``         | ``<realm>|product:<id>`` or ``<realm>|name:<lower name>`` | Item Id |                     |
| ``payment_method`` | ``<realm>|<lower name>``               | PaymentMethod Id |                              |
| ``account``      | ``<realm>|undeposited`` / ``<realm>|income`` | Account Id  |                               |

``data["realm_id"]`` names the company a row belongs to; a row of another company (after a reconnect to a
different company) is ignored and overwritten.

Customers (one identity, ``sync/links/customers.py``): what the product already knows (the link of the
contact, else a link with the same normalised email, whichever path wrote it: the contact import, a
customer webhook, the change sweep, an earlier invoice or receipt) costs no QuickBooks call. For an email
the product has never seen: when the contact import has seen every customer (it started within the change
data capture window), one CDC read since that import tells whether QuickBooks has it now; otherwise a
QuickBooks query by email (last resort: QuickBooks documents no email filter) and, since its empty answer
proves nothing (addresses with ``+`` have been reported missing), a CDC read of the last 30 days. Matches:
active first, then the oldest Id. Only then a new customer. Creating is serialised per contact by a link row holding the
``requestid``, committed before the call, so two jobs never create two customers for the same email and a
crash replays the same request. A DisplayName already in use (6240) moves on to the next deterministic
candidate (``Jane Doe`` → ``Jane Doe (jane@x.com)`` → ``Jane Doe (CRM 1a2b3c)`` → …).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from qbconnect.clock import utcnow
from qbconnect.domain.crm_models import CrmContactDetails, CrmLine
from qbconnect.domain.customer import QboCustomerDraft, clean_name, display_name_candidates, normalize_email
from qbconnect.domain.invoice import ROUNDING_ITEM_NAME
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.errors import ErrorCategory, PermanentError, TransientError
from qbconnect.qbo.client import QboClient, escape_query_value
from qbconnect.qbo.faults import DuplicateName, QboFault
from qbconnect.sync.contacts.state import IMPORT_KEY, read_state
from qbconnect.sync.engine.context import JobContext
from qbconnect.sync.links import customers, lists

CDC_LOOKBACK = timedelta(days=30) - timedelta(hours=1)  # Intuit's change data capture looks back 30 days
CDC_OVERLAP = timedelta(minutes=5)
CDC_FULL_ANSWER = 1000  # Intuit returns at most this many objects per entity: a full answer is not complete
REQUEST_NAMESPACE = uuid.UUID("6f1c1a52-7f0e-4a55-9d1c-0b8f3f9e2a10")
DEFAULT_ITEM_NAME = "Services"
UNNAMED_ITEM = "Sales"


def request_id(*parts: object) -> str:
    """A deterministic QuickBooks ``requestid`` (36 characters) for the given parts."""
    return str(uuid.uuid5(REQUEST_NAMESPACE, "|".join(str(p) for p in parts)))


def refused(exc: BaseException) -> bool:
    """Did QuickBooks answer the request with a fault (validation, a missing reference, a stale SyncToken,
    authorisation)? Then it created nothing: the retry re-plans and sends a new request with a new
    requestid. A timeout, a lost answer or a 5xx leave the outcome unknown: the saved request is replayed
    unchanged, with its requestid, first."""
    return isinstance(exc, QboFault) and exc.category is not ErrorCategory.TRANSIENT


# ---- list links ----------------------------------------------------------------------------------


def _cached(ctx: JobContext, kind: lists.ListKind, key: str, realm_id: str) -> str | None:
    return lists.cached_id(ctx.session, ctx.location_id, kind, key, realm_id)


def _pick(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Deterministic choice among matches: active before inactive, then the oldest (lowest) Id."""

    def key(obj: dict[str, Any]) -> tuple[int, int, str]:
        ident = str(obj.get("Id", ""))
        return (0 if obj.get("Active", True) else 1, int(ident) if ident.isdigit() else 1 << 62, ident)

    return min(objects, key=key) if objects else None


def _reactivate(qbo: QboClient, entity: str, obj: dict[str, Any], rid: str) -> dict[str, Any]:
    if obj.get("Active", True):
        return obj
    return qbo.update(entity, {"Id": obj["Id"], "SyncToken": obj["SyncToken"], "Active": True}, request_id=rid)


# ---- customers -----------------------------------------------------------------------------------


def customers_by_email(qbo: QboClient, email: str) -> list[dict[str, Any]]:
    """Every customer (active or not) whose primary email is ``email`` (QuickBooks compares case-insensitively)."""
    found = qbo.query(
        f"SELECT * FROM Customer WHERE PrimaryEmailAddr = '{escape_query_value(email)}' AND Active IN (true, false)"
    )
    wanted = email.lower()
    return [c for c in found if ((c.get("PrimaryEmailAddr") or {}).get("Address") or "").strip().lower() == wanted]


def resolve_customer(
    ctx: JobContext, contact: CrmContactDetails, qbo: QboClient, *, currency: str | None = None
) -> str:
    """The QuickBooks Customer Id for a CRM contact: the customer link → QuickBooks (change data capture,
    or a query by email as a last resort) → create (never a second customer for the same email).
    ``currency`` is given only for multicurrency companies: a customer's currency is fixed in QuickBooks,
    so only a customer in that currency matches."""
    realm_id = qbo.realm_id
    email = normalize_email(contact.email)
    key = contact.id or (f"email:{email}" if email else None)
    if key is None:
        raise PermanentError("The CRM contact has neither an id nor an email address, so no customer can be chosen.")
    currency = currency.upper() if currency else None
    if currency:
        key = f"{key}|{currency}"
    known = customers.known_customer(
        ctx.session, ctx.location_id, contact_id=contact.id, email=email, realm_id=realm_id, currency=currency
    )
    if known is not None:
        assert known.qbo_id is not None
        if known.crm_id not in (contact.id, key):
            # the same person under another contact id (or an email-keyed link): link this contact too
            mine = customers.find_customer(ctx.session, ctx.location_id, key)
            if mine is None or not mine.serves(realm_id, currency):
                _save_customer(ctx, key, known.qbo_id, realm_id, email, currency)
        return known.qbo_id

    if email:
        match = _customer_in_quickbooks(ctx, qbo, email, currency)
        if match is not None:
            match = _reactivate(qbo, "Customer", match, request_id(ctx.location_id, "customer-activate", match["Id"]))
            _save_customer(ctx, key, str(match["Id"]), realm_id, email, currency)
            return str(match["Id"])

    # Claim the creation: the link row (unique per contact) holds the requestid before the call.
    link = _claim(ctx, key, realm_id, email)
    base_rid = link.request_id or request_id(ctx.location_id, "customer", realm_id, key)
    draft = QboCustomerDraft.from_contact(contact, currency=currency)
    names = display_name_candidates(draft.display_name, email, contact.id)
    if draft.display_name not in names:
        names.insert(0, draft.display_name)
    for index, name in enumerate(names):
        rid = base_rid if index == 0 else request_id(base_rid, index)
        try:
            created = qbo.create("Customer", draft.with_display_name(name).to_qbo(), request_id=rid)
        except DuplicateName:
            ctx.log.info("customer.name_taken", display_name=name, realm_id=realm_id)
            continue
        _save_customer(ctx, key, str(created["Id"]), realm_id, email, currency)
        return str(created["Id"])
    raise PermanentError(
        f'Every QuickBooks customer name tried for "{draft.display_name}" is already in use '
        f"({', '.join(names)}). Rename one of them in QuickBooks, then retry."
    )


def _has_email(customer: dict[str, Any], email: str) -> bool:
    return normalize_email((customer.get("PrimaryEmailAddr") or {}).get("Address")) == email


def _import_started(ctx: JobContext, realm_id: str) -> datetime | None:
    """When the last complete contact import of this company started, if it did within the CDC window:
    every customer changed before then is in the link table."""
    progress = read_state(ctx.session, ctx.location_id, IMPORT_KEY)
    if progress.get("status") != "done" or progress.get("realm_id") != realm_id:
        return None
    try:
        started = datetime.fromisoformat(str(progress.get("started_at")))
    except ValueError:
        return None
    if started.tzinfo is None or utcnow() - started > CDC_LOOKBACK:
        return None
    return started


def _changed_customers(qbo: QboClient, since: datetime) -> tuple[list[dict[str, Any]], bool]:
    """Customers changed in QuickBooks since ``since`` (deleted ones left out), and whether the answer is whole."""
    changed, _ = qbo.cdc(["Customer"], since)
    found = changed.get("Customer") or []
    alive = [c for c in found if str(c.get("status") or "").lower() != "deleted"]
    return alive, len(found) < CDC_FULL_ANSWER


def _customer_in_quickbooks(ctx: JobContext, qbo: QboClient, email: str, currency: str | None) -> dict[str, Any] | None:
    """A QuickBooks customer with this email that the product has never seen, or None."""
    started = _import_started(ctx, qbo.realm_id)
    if started is not None:
        changed, whole = _changed_customers(qbo, started - CDC_OVERLAP)
        match = _pick([c for c in changed if _has_email(c, email) and _currency_ok(c, currency)])
        if match is not None or whole:
            return match
    match = _pick([c for c in customers_by_email(qbo, email) if _currency_ok(c, currency)])
    if match is not None:
        return match
    # An empty answer proves nothing: look at what changed in QuickBooks lately.
    changed, _ = _changed_customers(qbo, utcnow() - CDC_LOOKBACK)
    return _pick([c for c in changed if _has_email(c, email) and _currency_ok(c, currency)])


def _currency_ok(customer: dict[str, Any], currency: str | None) -> bool:
    if not currency:
        return True
    ref = customer.get("CurrencyRef") or {}
    return str(ref.get("value") or currency).upper() == currency.upper()


def _save_customer(
    ctx: JobContext, key: str, qbo_id: str, realm_id: str, email: str | None, currency: str | None
) -> None:
    customers.save_customer(
        ctx.session, ctx.location_id, key, qbo_id, realm_id=realm_id, email=email, currency=currency
    )


def _claim(ctx: JobContext, key: str, realm_id: str, email: str | None) -> customers.CustomerLink:
    link = customers.find_customer(ctx.session, ctx.location_id, key)
    if link is not None and link.request_id and link.belongs_to(realm_id):
        return link  # an earlier run claimed it and may have crashed: replay its requestid
    rid = request_id(ctx.location_id, "customer", realm_id, key)
    try:
        link = customers.claim_customer(
            ctx.session, ctx.location_id, key, realm_id=realm_id, email=email, request_id=rid
        )
    except IntegrityError as exc:
        ctx.session.rollback()
        raise TransientError("Another sync is creating this customer in QuickBooks; trying again shortly.") from exc
    return link


# ---- items ---------------------------------------------------------------------------------------


def item_name(line: CrmLine) -> str:
    return clean_name(line.name) or UNNAMED_ITEM


def resolve_item(ctx: JobContext, line: CrmLine, qbo: QboClient, settings: LocationSettings) -> str:
    """The QuickBooks Item Id for a CRM line, as the settings choose: the default item, a mapped product,
    an item of the same name, or a new Service item booked to the income account."""
    if settings.item_strategy == "default_item":
        if settings.default_item_id:
            return settings.default_item_id
        return _item_by_name(ctx, qbo, settings, DEFAULT_ITEM_NAME, None)
    if line.product_id and line.product_id in settings.product_item_map:
        return settings.product_item_map[line.product_id]
    return _item_by_name(ctx, qbo, settings, item_name(line), line.product_id)


def _item_by_name(
    ctx: JobContext, qbo: QboClient, settings: LocationSettings, name: str, product_id: str | None
) -> str:
    realm_id = qbo.realm_id
    key = f"{realm_id}|product:{product_id}" if product_id else f"{realm_id}|name:{name.lower()}"
    key = key[:128]
    cached = _cached(ctx, "item", key, realm_id)
    if cached:
        return cached
    item = _find_item(qbo, name)
    if item is None:
        body: dict[str, Any] = {
            "Name": name,
            "Type": "Service",
            "IncomeAccountRef": {"value": income_account(ctx, qbo, settings)},
        }
        try:
            item = qbo.create("Item", body, request_id=request_id(ctx.location_id, "item", realm_id, name.lower()))
        except DuplicateName:
            item = _find_item(qbo, name)  # created meanwhile by another job, or an inactive one
            if item is None:
                raise
    item = _reactivate(qbo, "Item", item, request_id(ctx.location_id, "item-activate", realm_id, item["Id"]))
    lists.save_list(ctx.session, ctx.location_id, "item", key, str(item["Id"]), realm_id=realm_id, name=name)
    return str(item["Id"])


def rounding_item(ctx: JobContext, qbo: QboClient, settings: LocationSettings) -> str:
    """The QuickBooks Item rounding lines are booked on (non-US companies, see ``domain/invoice.py``): a
    Service item named "Rounding" booked to the income account, found or created once per company."""
    return _item_by_name(ctx, qbo, settings, ROUNDING_ITEM_NAME, None)


def _find_item(qbo: QboClient, name: str) -> dict[str, Any] | None:
    found = qbo.query(f"SELECT * FROM Item WHERE Name = '{escape_query_value(name)}' AND Active IN (true, false)")
    return _pick([i for i in found if str(i.get("Name", "")).lower() == name.lower()])


def income_account(ctx: JobContext, qbo: QboClient, settings: LocationSettings) -> str:
    """The income account for items we create: the settings' choice, else the company's first Income account."""
    if settings.income_account_id:
        return settings.income_account_id
    realm_id = qbo.realm_id
    key = f"{realm_id}|income"
    cached = _cached(ctx, "account", key, realm_id)
    if cached:
        return cached
    accounts = qbo.query("SELECT * FROM Account WHERE AccountType = 'Income'")
    chosen = _pick(accounts)
    if chosen is None:
        raise PermanentError(
            "The QuickBooks company has no Income account to book new items to. Create one, or choose an "
            "income account in the settings."
        )
    lists.save_list(ctx.session, ctx.location_id, "account", key, str(chosen["Id"]), realm_id=realm_id)
    return str(chosen["Id"])


# ---- money in ------------------------------------------------------------------------------------


def resolve_payment_method(ctx: JobContext, name: str, type: str, qbo: QboClient) -> str:
    """The QuickBooks PaymentMethod Id named ``name`` (created with ``type`` CREDIT_CARD/NON_CREDIT_CARD)."""
    realm_id = qbo.realm_id
    clean = clean_name(name, 31) or "Other"
    key = f"{realm_id}|{clean.lower()}"[:128]
    cached = _cached(ctx, "payment_method", key, realm_id)
    if cached:
        return cached
    found = qbo.query(
        f"SELECT * FROM PaymentMethod WHERE Name = '{escape_query_value(clean)}' AND Active IN (true, false)"
    )
    method = _pick([m for m in found if str(m.get("Name", "")).lower() == clean.lower()])
    if method is None:
        try:
            method = qbo.create(
                "PaymentMethod",
                {"Name": clean, "Type": type},
                request_id=request_id(ctx.location_id, "payment_method", realm_id, clean.lower()),
            )
        except DuplicateName:
            found = qbo.query(
                f"SELECT * FROM PaymentMethod WHERE Name = '{escape_query_value(clean)}' AND Active IN (true, false)"
            )
            method = _pick(found)
            if method is None:
                raise
    method = _reactivate(
        qbo, "PaymentMethod", method, request_id(ctx.location_id, "pm-activate", realm_id, method["Id"])
    )
    lists.save_list(ctx.session, ctx.location_id, "payment_method", key, str(method["Id"]), realm_id=realm_id)
    return str(method["Id"])


def undeposited_funds_account(ctx: JobContext, qbo: QboClient) -> str:
    """The company's Undeposited Funds account Id (QuickBooks' default for payments and receipts)."""
    realm_id = qbo.realm_id
    key = f"{realm_id}|undeposited"
    cached = _cached(ctx, "account", key, realm_id)
    if cached:
        return cached
    found = qbo.query("SELECT * FROM Account WHERE AccountSubType = 'UndepositedFunds'")
    if not found:
        found = qbo.query("SELECT * FROM Account WHERE Name = 'Undeposited Funds'")
    chosen = _pick(found)
    if chosen is None:
        raise PermanentError(
            "The QuickBooks company has no Undeposited Funds account. Choose a deposit account in the settings."
        )
    lists.save_list(ctx.session, ctx.location_id, "account", key, str(chosen["Id"]), realm_id=realm_id)
    return str(chosen["Id"])
