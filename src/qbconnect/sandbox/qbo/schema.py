"""Request-body checks and XML writing driven by the table derived from Intuit's XSD."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .faults import unsupported_property
from .schema_table import COMPLEX, ELEMENTS, SIMPLE

NAMESPACE = "http://schema.intuit.com/finance/v3"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_CLASS = "com.intuit.schema.finance.v3."


def child_types(type_name: str) -> dict[str, tuple[str, bool]]:
    _attrs, children, _text = COMPLEX[type_name]
    return {name: (ctype, many) for name, ctype, many in children}


def attribute_types(type_name: str) -> dict[str, str]:
    return dict(COMPLEX[type_name][0])


def field_type(entity: str, path: list[str]) -> str | None:
    """Type name of a (dotted) property of an entity, or None when the schema has no such property."""
    current = ELEMENTS.get(entity)
    for part in path:
        if current is None or current not in COMPLEX:
            return None
        attrs, children, _text = COMPLEX[current]
        found = next((ctype for name, ctype, _many in children if name == part), None)
        if found is None:
            found = next((atype for name, atype in attrs if name == part), None)
        current = found
    return current


def simple_kind(type_name: str) -> str:
    if type_name in SIMPLE:
        return SIMPLE[type_name][0]
    return "complex" if type_name in COMPLEX else "string"


# ---------------------------------------------------------------- request validation


def check_entity(entity: str, body: Any) -> None:
    """Raise fault 2010 when ``body`` does not fit the entity's XSD type (unknown field, bad value)."""
    if not isinstance(body, dict):
        raise unsupported_property(f"failed to parse json object; {entity} must be an object")
    _check_complex(ELEMENTS[entity], body, entity)


def _check_complex(type_name: str, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise unsupported_property(
            f"Can not deserialize instance of {_CLASS}{type_name} out of {_token(value)} token", path
        )
    attrs, children, text = COMPLEX[type_name]
    attr_types = dict(attrs)
    child_map = {name: (ctype, many) for name, ctype, many in children}
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in attr_types:
            _check_simple(attr_types[key], item, where)
        elif key in child_map:
            ctype, many = child_map[key]
            if many:
                if not isinstance(item, list):
                    raise unsupported_property(
                        f"Can not deserialize instance of java.util.ArrayList out of {_token(item)} token", where
                    )
                for element in item:
                    _check_value(ctype, element, where)
            else:
                _check_value(ctype, item, where)
        elif text and key == "value":
            _check_simple(text, item, where)
        else:
            known = sorted([*attr_types, *child_map, *(["value"] if text else [])])
            raise unsupported_property(
                f'Unrecognized field "{key}" (class {_CLASS}{type_name.split(".")[0]}), not marked as '
                f"ignorable ({len(known)} known properties)",
                where,
            )


def _check_value(type_name: str, value: Any, path: str) -> None:
    if type_name in COMPLEX:
        _check_complex(type_name, value, path)
    else:
        _check_simple(type_name, value, path)


def _token(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    return "VALUE"


def _check_simple(type_name: str, value: Any, path: str) -> None:
    kind, enum = SIMPLE.get(type_name, ("string", ()))
    if value is None:
        return
    if isinstance(value, dict | list):
        raise unsupported_property(f"Can not deserialize instance of {type_name} out of {_token(value)} token", path)
    bad = False
    if kind == "decimal":
        bad = isinstance(value, bool) or not _is_number(value)
    elif kind == "int":
        bad = isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit()))
    elif kind == "boolean":
        bad = not (isinstance(value, bool) or value in ("true", "false"))
    elif kind == "date":
        bad = not (isinstance(value, str) and _DATE.match(value))
    elif kind == "dateTime":
        bad = not (isinstance(value, str) and (_DATETIME.match(value) or _DATE.match(value)))
    if not bad and enum and str(value) not in enum:
        bad = True
    if bad:
        raise unsupported_property(f"Can not construct instance of {type_name} from value {value!r}", path)


def _is_number(value: Any) -> bool:
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            Decimal(value)
        except InvalidOperation:
            return False
        return True
    return False


# ---------------------------------------------------------------- XML writing

_ROOT_CHILD_TYPES = {
    "Fault": "Fault",
    "QueryResponse": "QueryResponse",
    "BatchItemResponse": "BatchItemResponse",
    "CDCResponse": "CDCResponse",
}


def to_xml(payload: dict[str, Any]) -> str:
    """Serialise a JSON response payload as ``<IntuitResponse>`` XML in schema order."""
    parts = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n']
    attrs = ""
    if "time" in payload:
        attrs += f" time={quoteattr(str(payload['time']))}"
    parts.append(f"<IntuitResponse xmlns={quoteattr(NAMESPACE)}{attrs}>")
    _write_children("IntuitResponse", {k: v for k, v in payload.items() if k != "time"}, parts)
    parts.append("</IntuitResponse>")
    return "".join(parts)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | Decimal):
        text = format(Decimal(str(value)), "f")
        return text
    return str(value)


def _write_children(type_name: str, value: dict[str, Any], parts: list[str]) -> None:
    _attrs, children, _text = COMPLEX[type_name]
    names = [name for name, _ctype, _many in children]
    entity_slot = "IntuitObject" in names
    emitted: set[str] = set()
    for name, ctype, _many in children:
        if name == "IntuitObject" and entity_slot:
            for key, item in value.items():
                if key in ELEMENTS and key not in names:
                    for element in item if isinstance(item, list) else [item]:
                        _write_element(key, ELEMENTS[key], element, parts)
                    emitted.add(key)
            continue
        if name not in value:
            continue
        item = value[name]
        emitted.add(name)
        for element in item if isinstance(item, list) else [item]:
            _write_element(name, ctype, element, parts)


def _write_element(name: str, type_name: str, value: Any, parts: list[str]) -> None:
    if value is None:
        return
    if type_name not in COMPLEX:
        parts.append(f"<{name}>{escape(_format(value))}</{name}>")
        return
    attrs, _children, text = COMPLEX[type_name]
    attr_text = ""
    if isinstance(value, dict):
        for attr, _atype in attrs:
            if attr in value and value[attr] is not None:
                attr_text += f" {attr}={quoteattr(_format(value[attr]))}"
    if text:
        inner = value.get("value", "") if isinstance(value, dict) else value
        parts.append(f"<{name}{attr_text}>{escape(_format(inner))}</{name}>")
        return
    parts.append(f"<{name}{attr_text}>")
    if isinstance(value, dict):
        _write_children(type_name, value, parts)
    parts.append(f"</{name}>")
