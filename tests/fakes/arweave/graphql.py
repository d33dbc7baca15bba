"""``POST /graphql`` as an ar.io gateway answers it (schema ``src/routes/graphql/schema/types.graphql``,
resolvers and the SQLite cursor code of ar-io-node, served by Apollo Server 3).

* ``transactions(ids, owners, recipients, tags: [{name, values, op: EQ}], bundledIn, block:
  {min, max}, first = 10, after, sort = HEIGHT_DESC)`` returns ``{pageInfo {hasNextPage},
  edges {cursor node}}``; ``first`` is clamped to ``max_page_size`` (ar.io HEAD allows 1000,
  arweave.net 100); the cursor is ar.io's: base64url JSON ``[height, blockTransactionIndex,
  isDataItem, id, indexedAt]``; a bad cursor is an execution error (200, ``data: null``);
* ``transaction(id)`` returns the node or ``null``; ``block(id)`` / ``blocks`` are not served;
* the answer holds **only the requested fields**, in the requested order, under their aliases
  (``tags`` UTF-8 decoded, ``data.size`` a string, ``data.type`` the Content-Type tag,
  ``block`` null while pending, amounts ``{winston, ar}``);
* like Apollo 3, a syntax error answers 400 ``GRAPHQL_PARSE_FAILED``, a query that does not fit
  the schema (unknown field or argument, a missing sub-selection, a bad literal) answers 400
  ``GRAPHQL_VALIDATION_FAILED``; a bad variable value answers 400 ``BAD_USER_INPUT``.
"""

from __future__ import annotations

import json
from typing import Any

from .gqlparse import (
    MISSING,
    EnumValue,
    Field,
    FragmentSpread,
    GraphQLSyntaxError,
    Selection,
    Variable,
    parse,
)
from .identity import b64url_decode, b64url_encode, winston_to_ar
from .model import Tx, Weave

__all__ = ["execute", "target_txid"]

OBJECTS: dict[str, dict[str, str]] = {
    "TransactionConnection": {"pageInfo": "PageInfo!", "edges": "[TransactionEdge!]!"},
    "TransactionEdge": {"cursor": "String!", "node": "Transaction!"},
    "PageInfo": {"hasNextPage": "Boolean!"},
    "Transaction": {
        "id": "ID!",
        "anchor": "String!",
        "signature": "String!",
        "signatureType": "Int",
        "recipient": "String!",
        "owner": "Owner!",
        "fee": "Amount!",
        "quantity": "Amount!",
        "data": "MetaData!",
        "tags": "[Tag!]!",
        "block": "Block",
        "parent": "Parent",
        "bundledIn": "Bundle",
    },
    "Owner": {"address": "String!", "key": "String!"},
    "Amount": {"winston": "String!", "ar": "String!"},
    "MetaData": {"size": "String!", "type": "String"},
    "Tag": {"name": "String!", "value": "String!"},
    "Block": {"id": "ID!", "timestamp": "Int!", "height": "Int!", "previous": "ID!"},
    "Parent": {"id": "ID!"},
    "Bundle": {"id": "ID!"},
}
QUERY_ARGS: dict[str, tuple[str, dict[str, str]]] = {
    "transaction": ("Transaction", {"id": "ID!"}),
    "transactions": (
        "TransactionConnection!",
        {
            "ids": "[ID!]",
            "owners": "[String!]",
            "recipients": "[String!]",
            "tags": "[TagFilter!]",
            "bundledIn": "[ID!]",
            "block": "BlockFilter",
            "first": "Int",
            "after": "String",
            "sort": "SortOrder",
            "parent": "[ID!]",
        },
    ),
}
INPUTS = {
    "TagFilter": {"name": "String!", "values": "[String!]!", "op": "TagOperator"},
    "BlockFilter": {"min": "Int", "max": "Int"},
}
INPUT_DEFAULTS = {"TagFilter": {"op": EnumValue("EQ")}}
ENUMS = {"SortOrder": {"HEIGHT_ASC", "HEIGHT_DESC"}, "TagOperator": {"EQ"}}
SCALARS = {"ID", "String", "Int", "Boolean"}


class GraphQLError(Exception):
    def __init__(self, message: str, code: str, status: int = 400, node: Any = None) -> None:
        super().__init__(message)
        self.code, self.status = code, status
        self.locations = [{"line": node.line, "column": node.column}] if node is not None else None

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": str(self)}
        if self.locations:
            err["locations"] = self.locations
        err["extensions"] = {"code": self.code}
        return {"errors": [err]}


def _named(type_text: str) -> str:
    return type_text.strip("[]!")


def _coerce(value: Any, type_text: str, variables: dict[str, Any], what: str, from_var: bool = False) -> Any:
    """Coerce an argument (literal AST, or a JSON value from a variable) to ``type_text``;
    GraphQLError if it cannot."""
    if isinstance(value, Variable):
        if value.name not in variables:
            raise GraphQLError(f'Variable "${value.name}" is not defined.', "GRAPHQL_VALIDATION_FAILED")
        value, from_var = variables[value.name], True
        if value is MISSING:
            value = None
    code = "BAD_USER_INPUT" if from_var else "GRAPHQL_VALIDATION_FAILED"
    if type_text.endswith("!"):
        if value is None:
            raise GraphQLError(f"{what}: expected a non-null {type_text}, found null.", code)
        type_text = type_text[:-1]
    if value is None:
        return None
    if type_text.startswith("["):
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, type_text[1:-1], variables, what, from_var) for v in items]
    if type_text in INPUTS:
        if not isinstance(value, dict):
            raise GraphQLError(f"{what}: expected type {type_text} to be an object.", code)
        spec = INPUTS[type_text]
        extra = set(value) - set(spec)
        if extra:
            raise GraphQLError(f'Field "{min(extra)}" is not defined by type "{type_text}".', code)
        merged = {**INPUT_DEFAULTS.get(type_text, {}), **value}
        return {k: _coerce(merged.get(k), t, variables, f"{what}.{k}", from_var) for k, t in spec.items()}
    if type_text in ENUMS:
        name = value.name if isinstance(value, EnumValue) else value if from_var else None
        if not isinstance(name, str) or name not in ENUMS[type_text]:
            raise GraphQLError(f'{what}: Enum "{type_text}" cannot represent value: {json.dumps(str(value))}', code)
        return name
    ok = {
        "Int": isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31,
        "Boolean": isinstance(value, bool),
        "String": isinstance(value, str),
        "ID": isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)),
    }[type_text]
    if not ok:
        raise GraphQLError(f"{what}: {type_text} cannot represent value: {value!r}", code)
    return str(value) if type_text == "ID" else value


class _Projector:
    """Validates selections against the schema and projects resolved values onto them."""

    def __init__(self, fragments: dict[str, Any], variables: dict[str, Any]) -> None:
        self.fragments, self.variables = fragments, variables

    def fields(self, selections: list[Selection], type_name: str) -> list[Field]:
        out: list[Field] = []
        for sel in selections:
            if not self.included(sel.directives):
                continue
            if isinstance(sel, Field):
                out.append(sel)
                continue
            if isinstance(sel, FragmentSpread):
                frag = self.fragments.get(sel.name)
                if frag is None:
                    raise GraphQLError(f'Unknown fragment "{sel.name}".', "GRAPHQL_VALIDATION_FAILED", node=sel)
                cond, inner = frag.type_condition, frag.selections
            else:
                cond, inner = sel.type_condition, sel.selections
            if cond not in (None, type_name):
                raise GraphQLError(
                    f'Fragment cannot be spread here: "{cond}" is not "{type_name}".', "GRAPHQL_VALIDATION_FAILED"
                )
            out.extend(self.fields(inner, type_name))
        return out

    def included(self, directives: dict[str, dict[str, Any]]) -> bool:
        for name, args in directives.items():
            if name not in ("include", "skip"):
                raise GraphQLError(f'Unknown directive "@{name}".', "GRAPHQL_VALIDATION_FAILED")
            flag = _coerce(args.get("if"), "Boolean!", self.variables, f"@{name}(if:)")
            if flag == (name == "skip"):
                return False
        return True

    def check(self, selections: list[Selection] | None, type_text: str, where: str, node: Any) -> None:
        """Static validation of one selection set against an output type."""
        name = _named(type_text)
        if name in SCALARS:
            if selections is not None:
                msg = f'Field "{where}" must not have a selection since type "{type_text}" has no subfields.'
                raise GraphQLError(msg, "GRAPHQL_VALIDATION_FAILED", node=node)
            return
        if selections is None:
            msg = f'Field "{where}" of type "{type_text}" must have a selection of subfields.'
            raise GraphQLError(msg, "GRAPHQL_VALIDATION_FAILED", node=node)
        for f in self.fields(selections, name):
            if f.name == "__typename":
                continue
            if f.name not in OBJECTS[name]:
                msg = f'Cannot query field "{f.name}" on type "{name}".'
                raise GraphQLError(msg, "GRAPHQL_VALIDATION_FAILED", node=f)
            if f.args:
                msg = f'Unknown argument "{next(iter(f.args))}" on field "{name}.{f.name}".'
                raise GraphQLError(msg, "GRAPHQL_VALIDATION_FAILED", node=f)
            self.check(f.selections, OBJECTS[name][f.name], f.name, f)

    def project(self, value: Any, selections: list[Selection] | None, type_text: str) -> Any:
        if value is None or selections is None:
            return value
        if isinstance(value, list):
            return [self.project(v, selections, type_text) for v in value]
        name = _named(type_text)
        out: dict[str, Any] = {}
        for f in self.fields(selections, name):
            sub = name if f.name == "__typename" else value[f.name]
            out[f.key] = self.project(sub, f.selections, OBJECTS[name].get(f.name, "String"))
        return out


def tx_node(weave: Weave, tx: Tx) -> dict[str, Any]:
    """Every field of a GraphQL ``Transaction``, resolved as ar.io does."""
    block = None
    if tx.height is not None:
        b = weave.block(tx.height)
        block = {"id": b.id, "timestamp": b.timestamp, "height": b.height, "previous": b.previous}
    return {
        "id": tx.id,
        "anchor": tx.last_tx,
        "signature": tx.signature,
        "signatureType": 1,
        "recipient": tx.target,
        "owner": {"address": tx.owner_address, "key": tx.owner},
        "fee": {"winston": str(tx.reward), "ar": winston_to_ar(tx.reward)},
        "quantity": {"winston": str(tx.quantity), "ar": winston_to_ar(tx.quantity)},
        "data": {"size": str(tx.data_size), "type": tx.content_type},
        "tags": [{"name": n, "value": v} for n, v in tx.str_tags],
        "block": block,
        "parent": None,
        "bundledIn": None,
    }


def _cursor(tx: Tx) -> str:
    return b64url_encode(
        json.dumps(
            [tx.height, tx.block_index, False, tx.id, tx.indexed_at if tx.pending else None], separators=(",", ":")
        ).encode()
    )


def _after_key(cursor: str) -> tuple[int, int, int]:
    try:
        height, index, _, _, indexed_at = json.loads(b64url_decode(cursor))
        return (1, int(indexed_at), 0) if height is None else (0, int(height), int(index or 0))
    except (ValueError, TypeError):
        raise GraphQLError("Invalid transaction cursor", "INTERNAL_SERVER_ERROR", status=200) from None


def _transactions(weave: Weave, args: dict[str, Any], max_page_size: int) -> dict[str, Any]:
    descending = (args["sort"] or "HEIGHT_DESC") == "HEIGHT_DESC"
    block = args["block"] or {}
    found = weave.find(
        ids=args["ids"],
        owners=args["owners"],
        recipients=args["recipients"],
        tags=[(t["name"], t["values"]) for t in args["tags"] or []],
        min_height=block.get("min"),
        max_height=block.get("max"),
        bundled_in=args["bundledIn"] if args["bundledIn"] is not None else args["parent"],
        descending=descending,
    )
    if args["after"]:
        key = _after_key(args["after"])
        found = [t for t in found if (weave.order_key(t) < key) == descending and weave.order_key(t) != key]
    size = max(0, min(10 if args["first"] is None else args["first"], max_page_size))
    page = found[:size]
    edges = [{"cursor": _cursor(t), "node": tx_node(weave, t)} for t in page]
    return {"pageInfo": {"hasNextPage": len(found) > size}, "edges": edges}


def target_txid(body: Any) -> str | None:
    """The id a ``transaction(id: ...)`` query asks for (None for any other request)."""
    try:
        doc = parse(body["query"])
    except (GraphQLSyntaxError, KeyError, TypeError):
        return None
    for op in doc.operations:
        for sel in op.selections:
            if isinstance(sel, Field) and sel.name == "transaction":
                value = sel.args.get("id")
                if isinstance(value, Variable):
                    value = (body.get("variables") or {}).get(value.name)
                return value if isinstance(value, str) else None
    return None


def execute(weave: Weave, body: Any, *, max_page_size: int = 100) -> tuple[int, dict[str, Any]]:
    """Answer one GraphQL request body (already JSON-decoded): ``(status, response JSON)``."""
    try:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
            raise GraphQLError(
                "GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.", "BAD_REQUEST"
            )
        try:
            doc = parse(body["query"])
        except GraphQLSyntaxError as exc:
            err = GraphQLError(str(exc), "GRAPHQL_PARSE_FAILED")
            err.locations = [{"line": exc.line, "column": exc.column}]
            raise err from None
        wanted = body.get("operationName")
        ops = [o for o in doc.operations if wanted is None or o.name == wanted]
        if len(ops) != 1:
            msg = (
                "Must provide operation name if query contains multiple operations."
                if wanted is None
                else f'Unknown operation named "{wanted}".'
            )
            raise GraphQLError(msg, "BAD_REQUEST" if wanted is None else "OPERATION_RESOLUTION_FAILURE")
        op = ops[0]
        if op.kind != "query":
            raise GraphQLError(f"Schema is not configured to execute {op.kind} operation.", "GRAPHQL_VALIDATION_FAILED")
        given = body.get("variables") or {}
        variables = {k: given.get(k, default) for k, (_, default) in op.variables.items()}
        for k, (type_text, _) in op.variables.items():
            _coerce(Variable(k), type_text, variables, f'Variable "${k}"')
        proj = _Projector(doc.fragments, variables)
        roots = proj.fields(op.selections, "Query")
        for f in roots:
            if f.name == "__typename":
                continue
            if f.name not in QUERY_ARGS:
                raise GraphQLError(
                    f'Cannot query field "{f.name}" on type "Query".', "GRAPHQL_VALIDATION_FAILED", node=f
                )
            result_type, arg_types = QUERY_ARGS[f.name]
            for a in f.args:
                if a not in arg_types:
                    raise GraphQLError(
                        f'Unknown argument "{a}" on field "Query.{f.name}".', "GRAPHQL_VALIDATION_FAILED", node=f
                    )
            proj.check(f.selections, result_type, f.name, f)
        data: dict[str, Any] = {}
        for f in roots:
            if f.name == "__typename":
                data[f.key] = "Query"
                continue
            result_type, arg_types = QUERY_ARGS[f.name]
            args = {a: _coerce(f.args.get(a), t, variables, f'Argument "{a}"') for a, t in arg_types.items()}
            if f.name == "transaction":
                tx = weave.get(args["id"])
                value = None if tx is None or tx.error_codes is not None else tx_node(weave, tx)
            else:
                value = _transactions(weave, args, max_page_size)
            data[f.key] = proj.project(value, f.selections, result_type)
        return 200, {"data": data}
    except GraphQLError as exc:
        out = exc.body()
        if exc.status == 200:
            out["data"] = None
        return exc.status, out
