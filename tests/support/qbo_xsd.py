"""Validate QBO JSON payloads against Intuit's official XSDs (../shared/reference/qbo/xsd).

Recipe (qbo/NOTES.md §6): walk the JSON alongside the XSD type; keys that are XSD attributes
(``sparse``, ``domain``, ``status``, ...) become XML attributes, ``"value"`` of a simple-content type
becomes element text, child keys are ordered by the XSD sequence, the document is serialised in the
``http://schema.intuit.com/finance/v3`` namespace and validated with ``schema.iter_errors``.

Structure and types only: no QBO business rules.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

import xmlschema

from tests.support.reference import reference_dir

QBO_NS = "http://schema.intuit.com/finance/v3"


@functools.lru_cache(maxsize=1)
def _schema() -> Any:
    path = reference_dir("qbo", "xsd") / "IntuitRestServiceDef.xsd"
    return xmlschema.XMLSchema(str(path))


def _qname(name: str) -> str:
    return f"{{{QBO_NS}}}{name}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict | list):
        # A structure where the schema expects text: leave a marker the validator rejects.
        return repr(value)
    return str(value)


def _local(name: str | None) -> str:
    if not name:
        return ""
    return name.split("}", 1)[1] if name.startswith("{") else name


def _children_of(xsd_type: Any) -> dict[str, tuple[int, Any]]:
    """Child element name -> (position in the content model, element declaration)."""
    schema = _schema()
    result: dict[str, tuple[int, Any]] = {}
    content = getattr(xsd_type, "content", None)
    if content is None or not hasattr(content, "iter_elements"):
        return result
    for position, element in enumerate(content.iter_elements()):
        name = _local(element.name)
        result.setdefault(name, (position, element))
        if getattr(element, "abstract", False) or element.name in schema.substitution_groups:
            for substitute in schema.substitution_groups.get(element.name, ()):
                result.setdefault(_local(substitute.name), (position, substitute))
    return result


def _build(name: str, xsd_type: Any, value: Any) -> ET.Element:
    node = ET.Element(_qname(name))
    if xsd_type is None:
        # Unknown element: serialise it plainly so the validator reports it.
        if not isinstance(value, dict | list):
            node.text = _text(value)
        return node
    if xsd_type.is_simple() or not isinstance(value, dict):
        node.text = _text(value)
        return node

    attributes = getattr(xsd_type, "attributes", {})
    attribute_names = {_local(key) for key in attributes if key}
    children = _children_of(xsd_type)
    simple_content = xsd_type.has_simple_content()
    ordered: list[tuple[int, int, ET.Element]] = []
    unknown_position = len(children) + 1
    for index, (key, item) in enumerate(value.items()):
        if item is None:
            continue
        if key in attribute_names:
            node.set(key, _text(item))
            continue
        if key == "value" and simple_content:
            node.text = _text(item)
            continue
        position, element = children.get(key, (unknown_position, None))
        child_type = element.type if element is not None else None
        items = item if isinstance(item, list) else [item]
        for sub in items:
            ordered.append((position, index, _build(key, child_type, sub)))
    for _, _, child in sorted(ordered, key=lambda entry: (entry[0], entry[1])):
        node.append(child)
    return node


def qbo_json_to_xml(entity: str, payload: dict[str, Any]) -> str:
    """Serialise a QBO JSON entity body (e.g. ``entity="Invoice"``) to namespaced XML text."""
    schema = _schema()
    try:
        element = schema.elements[entity]
    except KeyError:
        raise ValueError(f"no top-level XSD element named {entity!r}") from None
    root = _build(entity, element.type, payload)
    ET.register_namespace("", QBO_NS)
    return ET.tostring(root, encoding="unicode")


def validate_qbo_xml(xml_text: str) -> list[str]:
    """Validate XML text against the QBO schema; return error messages (empty list = valid)."""
    schema = _schema()
    return [_describe(error) for error in schema.iter_errors(xml_text)]


def validate_qbo_json(entity: str, payload: dict[str, Any]) -> list[str]:
    """Validate a QBO JSON entity body; return error messages (empty list = valid)."""
    return validate_qbo_xml(qbo_json_to_xml(entity, payload))


def _describe(error: Any) -> str:
    path = getattr(error, "path", None)
    reason = getattr(error, "reason", None) or str(error)
    return f"{path}: {reason}" if path else str(reason)
