"""The QBO query language: SELECT * | COUNT(*) FROM e [WHERE ...] [ORDERBY ...] [STARTPOSITION n] [MAXRESULTS n]."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from . import faults
from .clock import parse_time
from .entities import ALL, NAME_LISTS
from .schema import field_type, simple_kind

MAX_RESULTS = 1000
DEFAULT_RESULTS = 100
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:\\.|[^'\\])*')|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,|\*)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|(?P<number>-?\d+(?:\.\d+)?))"
)
_OPS = ("=", "<", ">", "<=", ">=", "IN", "LIKE")


@dataclass
class Condition:
    path: list[str]
    op: str
    values: list[str]


@dataclass
class Query:
    entity: str
    count: bool = False
    where: list[Condition] = field(default_factory=list)
    order: list[tuple[list[str], bool]] = field(default_factory=list)
    start: int = 1
    max_results: int = DEFAULT_RESULTS


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip().rstrip(";")
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise faults.invalid_query(f'Encountered " {text[pos : pos + 10]!r} " at column {pos + 1}.')
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise faults.invalid_query("Encountered <EOF>: the query ended too early.")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> str:
        kind, value = self.take()
        if kind != "word" or value.upper() not in words:
            raise faults.invalid_query(f'Encountered "{value}", expected {" or ".join(words)}.')
        return value.upper()

    def is_keyword(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].upper() == word

    def expect(self, op: str) -> None:
        kind, value = self.take()
        if kind != "op" or value != op:
            raise faults.invalid_query(f'Encountered "{value}", expected "{op}".')

    def value(self) -> str:
        kind, value = self.take()
        if kind in ("string", "number"):
            return value
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower()
        raise faults.invalid_query(f'Encountered "{value}": values must be quoted.')

    def integer(self) -> int:
        kind, value = self.take()
        if kind not in ("number", "string") or not value.isdigit():
            raise faults.invalid_query(f'Encountered "{value}", expected a positive integer.')
        return int(value)


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise faults.invalid_query("empty query")
    parser = _Parser(text)
    parser.keyword("SELECT")
    count = False
    kind, value = parser.take()
    if kind == "op" and value == "*":
        pass
    elif kind == "word" and value.upper() == "COUNT":
        parser.expect("(")
        parser.expect("*")
        parser.expect(")")
        count = True
    else:
        raise faults.invalid_query(f'Encountered "{value}": only SELECT * and SELECT COUNT(*) are supported.')
    parser.keyword("FROM")
    kind, name = parser.take()
    entity = next((e for e in ALL if e.lower() == name.lower()), None)
    if kind != "word" or entity is None:
        raise faults.invalid_query(f"Invalid entity name {name}.")
    query = Query(entity=entity, count=count)
    if parser.is_keyword("WHERE"):
        parser.take()
        while True:
            query.where.append(_condition(parser, entity))
            if parser.is_keyword("AND"):
                parser.take()
                continue
            if parser.is_keyword("OR"):
                raise faults.invalid_query("OR is not supported.")
            break
    if parser.is_keyword("ORDERBY") or parser.is_keyword("ORDER"):
        word = parser.take()[1].upper()
        if word == "ORDER":
            parser.keyword("BY")
        while True:
            kind, field_name = parser.take()
            path = _property(entity, field_name)
            descending = False
            if parser.is_keyword("ASC") or parser.is_keyword("DESC"):
                descending = parser.take()[1].upper() == "DESC"
            query.order.append((path, descending))
            token = parser.peek()
            if token == ("op", ","):
                parser.take()
                continue
            break
    if parser.is_keyword("STARTPOSITION"):
        parser.take()
        query.start = max(1, parser.integer())
    if parser.is_keyword("MAXRESULTS"):
        parser.take()
        query.max_results = min(parser.integer(), MAX_RESULTS)
    if parser.peek() is not None:
        raise faults.invalid_query(f'Encountered "{parser.peek()[1]}" at the end of the query.')  # type: ignore[index]
    return query


def _property(entity: str, name: str) -> list[str]:
    path = name.split(".")
    if name == "Id":
        return path
    if field_type(entity, path) is None:
        raise faults.invalid_query(f"QueryValidationError: property '{name}' is not queryable")
    return path


def _condition(parser: _Parser, entity: str) -> Condition:
    kind, name = parser.take()
    if kind != "word":
        raise faults.invalid_query(f'Encountered "{name}", expected a property name.')
    path = _property(entity, name)
    kind, op = parser.take()
    op = op.upper()
    if op not in _OPS:
        raise faults.invalid_query(f'Encountered "{op}": operator not supported.')
    if name == "Id" and op not in ("=", "IN"):
        raise faults.invalid_query("QueryValidationError: Id supports only = and IN.")
    if op == "IN":
        parser.expect("(")
        values = [parser.value()]
        while parser.peek() == ("op", ","):
            parser.take()
            values.append(parser.value())
        parser.expect(")")
    else:
        values = [parser.value()]
    return Condition(path, op, values)


# ---------------------------------------------------------------- evaluation


def _leaf(obj: dict[str, Any], path: list[str]) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, dict):
        for key in ("value", "Address", "FreeFormNumber", "URI"):
            if key in value:
                return value[key]
        return None
    return value


def _typed(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in ("decimal", "int"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise faults.invalid_query(f"invalid number {value!r}") from None
    if kind == "boolean":
        return str(value).lower() == "true"
    if kind in ("date", "dateTime"):
        try:
            return parse_time(str(value))
        except ValueError:
            raise faults.invalid_query(f"invalid date {value!r}") from None
    return str(value).casefold()


def _kind(entity: str, path: list[str]) -> str:
    if path == ["Id"]:
        return "id"
    type_name = field_type(entity, path)
    kind = simple_kind(type_name or "string")
    if kind == "complex":
        return "string"
    return kind


def _matches(entity: str, obj: dict[str, Any], cond: Condition) -> bool:
    kind = _kind(entity, cond.path)
    raw = _leaf(obj, cond.path)
    if raw is None:
        return False
    if kind == "id":
        return str(raw) in cond.values
    value = _typed(kind, raw)
    if cond.op == "LIKE":
        pattern = "^" + ".*".join(re.escape(p) for p in cond.values[0].casefold().split("%")) + "$"
        return re.match(pattern, str(raw).casefold(), re.DOTALL) is not None
    targets = [_typed(kind, v) for v in cond.values]
    if cond.op in ("=", "IN"):
        return value in targets
    target = targets[0]
    try:
        if cond.op == "<":
            return bool(value < target)
        if cond.op == ">":
            return bool(value > target)
        if cond.op == "<=":
            return bool(value <= target)
        return bool(value >= target)
    except TypeError:
        return False


def _id_key(obj: dict[str, Any]) -> tuple[int, int, str]:
    text = str(obj.get("Id", ""))
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def run(query: Query, objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Filter, order and page; returns (page, total matching)."""
    conditions = list(query.where)
    if query.entity in NAME_LISTS and not any(c.path == ["Active"] for c in conditions):
        conditions.append(Condition(["Active"], "=", ["true"]))
    found = [o for o in objects if all(_matches(query.entity, o, c) for c in conditions)]
    for path, descending in reversed(query.order):
        if path == ["Id"]:
            found.sort(key=_id_key, reverse=descending)
            continue
        kind = _kind(query.entity, path)
        present = [o for o in found if _leaf(o, path) is not None]
        missing = [o for o in found if _leaf(o, path) is None]
        present.sort(key=lambda o, p=path, k=kind: _typed(k, _leaf(o, p)), reverse=descending)  # type: ignore[misc]
        found = present + missing
    if query.count:
        return [], len(found)
    start = query.start - 1
    return found[start : start + query.max_results], len(found)
