"""Validate HighLevel-shaped responses against the official OpenAPI specs in ../shared/reference.

``validate_response("invoices.json", "get", "/invoices/{invoiceId}", 200, body)`` returns the list of
problems (empty when the body matches the documented response schema, ``$ref``s resolved, OpenAPI 3.0
``nullable`` honoured). A handful of spec errata — places where a declared type contradicts the spec's
own example and the official webhook schemas — are corrected before validating; each is listed in
``SPEC_ERRATA`` with its reason.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.support.reference import reference_dir

BASE = "https://reference.invalid/highlevel/openapi/v2/"

# (spec file, path of keys to the schema node, replacement, reason)
SPEC_ERRATA: list[tuple[str, tuple[str, ...], dict[str, Any], str]] = [
    (
        "invoices.json",
        ("components", "schemas", "GetInvoiceResponseDto", "properties", "invoiceNumber"),
        {"type": "string"},
        'declared number, but its example is "19" and every Invoice* webhook schema says string',
    ),
    (
        "invoices.json",
        ("components", "schemas", "GetInvoiceResponseDto", "properties", "invoiceItems", "items"),
        {"type": "object"},
        "declared array of strings, but its example (and the webhook examples) are item objects",
    ),
    (
        "payments.json",
        ("components", "schemas", "GetOrderResponseSchema", "properties", "items", "items"),
        {"type": "object"},
        "declared array of strings, but the example and the OrderCreate webhook show item objects",
    ),
    *[
        (
            "payments.json",
            ("components", "schemas", schema, "properties", prop),
            {"type": "string"},
            f'{schema}.{prop} is declared object, but its example is a plain string ("succeeded", "location")',
        )
        for schema, prop in (
            ("TxnResponseSchema", "status"),
            ("GetTxnResponseSchema", "status"),
            ("SubscriptionResponseSchema", "status"),
            ("GetSubscriptionResponseSchema", "status"),
            ("GetSubscriptionResponseSchema", "altType"),
        )
    ],
]


def _spec_name(spec_file: str) -> str:
    name = spec_file.rsplit("/", 1)[-1]
    return name if name.endswith(".json") else f"{name}.json"


@cache
def _documents(spec_name: str) -> tuple[dict[str, Any], Registry]:
    root = reference_dir("highlevel", "openapi", "v2")
    document = json.loads((root / "apps" / spec_name).read_text(encoding="utf-8"))
    common = json.loads((root / "common" / "common-schemas.json").read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    for name, keys, replacement, _reason in SPEC_ERRATA:
        if name != spec_name:
            continue
        node: Any = document
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = {**node[keys[-1]], **replacement}
        node[keys[-1]].pop("allOf", None)
    registry: Registry = Registry().with_resources(
        [
            (BASE + "apps/" + spec_name, Resource.from_contents(document, default_specification=DRAFT4)),
            (BASE + "common/common-schemas.json", Resource.from_contents(common, default_specification=DRAFT4)),
        ]
    )
    return document, registry


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def response_schema_pointer(spec_file: str, method: str, path_template: str, status: int) -> str:
    spec_name = _spec_name(spec_file)
    document, _ = _documents(spec_name)
    operation = document["paths"][path_template][method.lower()]
    response = operation["responses"][str(status)]
    if "content" not in response:
        raise LookupError(f"{method.upper()} {path_template} {status} has no documented body")
    return (
        f"{BASE}apps/{spec_name}#/paths/{_escape(path_template)}/{method.lower()}/responses/{status}"
        "/content/application~1json/schema"
    )


def validate_response(spec_file: str, method: str, path_template: str, status: int, body: Any) -> list[str]:
    """Problems with ``body`` as the documented response of that operation and status (empty = valid)."""
    _, registry = _documents(_spec_name(spec_file))
    try:
        pointer = response_schema_pointer(spec_file, method, path_template, status)
    except KeyError as exc:
        return [f"{method.upper()} {path_template} documents no {status} response ({exc})"]
    validator = OAS30Validator({"$ref": pointer}, registry=registry)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
