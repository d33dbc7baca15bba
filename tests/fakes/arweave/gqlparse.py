"""A small GraphQL (October 2021 spec) lexer and recursive-descent parser for executable documents.

It covers what clients of an Arweave gateway send: anonymous ``{ ... }`` or named operations
with variable definitions and defaults, fields with aliases and arguments (inline literals —
what ritual-arweave sends — or ``$variables``), nested selection sets, named fragments, inline
fragments and ``@include``/``@skip`` directives. Commas, whitespace and ``#`` comments are
ignored, strings support escapes and ``\"\"\"block strings\"\"\"``. Syntax errors raise
`GraphQLSyntaxError` worded like graphql-js ("Syntax Error: Expected Name, found "}".").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Document",
    "EnumValue",
    "Field",
    "FragmentDef",
    "FragmentSpread",
    "GraphQLSyntaxError",
    "InlineFragment",
    "Operation",
    "Selection",
    "Variable",
    "parse",
]


class GraphQLSyntaxError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"Syntax Error: {message}")
        self.line, self.column = line, column


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class EnumValue:
    name: str


@dataclass
class Field:
    name: str
    alias: str | None
    args: dict[str, Any]
    selections: list[Selection] | None
    directives: dict[str, dict[str, Any]]
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class FragmentSpread:
    name: str
    directives: dict[str, dict[str, Any]]
    line: int
    column: int


@dataclass
class InlineFragment:
    type_condition: str | None
    selections: list[Selection]
    directives: dict[str, dict[str, Any]]


Selection = Field | FragmentSpread | InlineFragment


@dataclass
class Operation:
    kind: str  # query | mutation | subscription
    name: str | None
    variables: dict[str, tuple[str, Any]]  # name -> (type text, default or _MISSING)
    selections: list[Selection]


@dataclass
class FragmentDef:
    name: str
    type_condition: str
    selections: list[Selection]


@dataclass
class Document:
    operations: list[Operation] = field(default_factory=list)
    fragments: dict[str, FragmentDef] = field(default_factory=dict)


MISSING: Any = object()

_TOKEN = re.compile(
    r"(?P<ws>[\s,\ufeff]+|#[^\n\r]*)"
    r'|(?P<block>"""(?:\\"""|[^"]|"(?!""))*""")'
    r'|(?P<string>"(?:[^"\\\n\r]|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*")'
    r"|(?P<float>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))"
    r"|(?P<int>-?(?:0|[1-9][0-9]*))"
    r"|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
    r"|(?P<punct>\.\.\.|[!$&()\:=@\[\]{}|])"
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    column: int

    def show(self) -> str:
        return "<EOF>" if self.kind == "eof" else json.dumps(self.text) if self.kind == "punct" else self.text


def _lex(source: str) -> list[_Tok]:
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise GraphQLSyntaxError(f"Unexpected character: {source[pos]!r}.", line, pos - line_start + 1)
        kind = m.lastgroup or "ws"
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), line, pos - line_start + 1))
        for nl in re.finditer(r"\r\n|[\n\r]", m.group()):
            line, line_start = line + 1, pos + nl.end()
        pos = m.end()
    tokens.append(_Tok("eof", "", line, pos - line_start + 1))
    return tokens


def _string_value(tok: _Tok) -> str:
    if tok.kind == "block":
        body = tok.text[3:-3].replace('\\"""', '"""')
        lines = body.splitlines()
        indent = min((len(ln) - len(ln.lstrip(" \t")) for ln in lines[1:] if ln.strip()), default=0)
        lines = [lines[0], *(ln[indent:] for ln in lines[1:])] if lines else []
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines)
    return str(json.loads(tok.text))


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _lex(source)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, expected: str) -> GraphQLSyntaxError:
        return GraphQLSyntaxError(f"Expected {expected}, found {self.tok.show()}.", self.tok.line, self.tok.column)

    def peek(self, text: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == text

    def take(self, text: str) -> _Tok:
        if not self.peek(text):
            raise self.fail(json.dumps(text))
        tok, self.i = self.tok, self.i + 1
        return tok

    def name(self) -> str:
        if self.tok.kind != "name":
            raise self.fail("Name")
        tok, self.i = self.tok, self.i + 1
        return tok.text

    def document(self) -> Document:
        doc = Document()
        while self.tok.kind != "eof":
            if self.peek("{"):
                doc.operations.append(Operation("query", None, {}, self.selection_set()))
            elif self.tok.kind == "name" and self.tok.text in ("query", "mutation", "subscription"):
                doc.operations.append(self.operation())
            elif self.tok.kind == "name" and self.tok.text == "fragment":
                self.i += 1
                name = self.name()
                if self.name() != "on":
                    raise self.fail('"on"')
                frag = FragmentDef(name, self.name(), [])
                self.directives()
                frag.selections = self.selection_set()
                doc.fragments[name] = frag
            else:
                raise GraphQLSyntaxError(f"Unexpected {self.tok.show()}.", self.tok.line, self.tok.column)
        return doc

    def operation(self) -> Operation:
        kind = self.name()
        name = self.name() if self.tok.kind == "name" else None
        variables: dict[str, tuple[str, Any]] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                self.take("$")
                var = self.name()
                self.take(":")
                type_text = self.type_ref()
                default = self.value(const=True) if self.peek("=") and self.take("=") else MISSING
                variables[var] = (type_text, default)
            self.take(")")
        self.directives()
        return Operation(kind, name, variables, self.selection_set())

    def type_ref(self) -> str:
        if self.peek("["):
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.name()
        return text + "!" if self.peek("!") and self.take("!") else text

    def selection_set(self) -> list[Selection]:
        self.take("{")
        out: list[Selection] = []
        while not self.peek("}"):
            out.append(self.selection())
        self.take("}")
        return out

    def selection(self) -> Selection:
        start = self.tok
        if self.peek("..."):
            self.take("...")
            if self.tok.kind == "name" and self.tok.text != "on":
                return FragmentSpread(self.name(), self.directives(), start.line, start.column)
            cond = None
            if self.tok.kind == "name":
                self.i += 1
                cond = self.name()
            directives = self.directives()
            return InlineFragment(cond, self.selection_set(), directives)
        alias, name = None, self.name()
        if self.peek(":"):
            self.take(":")
            alias, name = name, self.name()
        args = self.arguments(const=False)
        directives = self.directives()
        selections = self.selection_set() if self.peek("{") else None
        return Field(name, alias, args, selections, directives, start.line, start.column)

    def arguments(self, *, const: bool) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            if self.peek(")"):
                raise self.fail("Name")
            while not self.peek(")"):
                key = self.name()
                self.take(":")
                args[key] = self.value(const=const)
            self.take(")")
        return args

    def directives(self) -> dict[str, dict[str, Any]]:
        out = {}
        while self.peek("@"):
            self.take("@")
            name = self.name()
            out[name] = self.arguments(const=False)
        return out

    def value(self, *, const: bool) -> Any:
        tok = self.tok
        if tok.kind == "punct" and tok.text == "$" and not const:
            self.i += 1
            return Variable(self.name())
        if tok.kind == "punct" and tok.text == "[":
            self.i += 1
            items = []
            while not self.peek("]"):
                items.append(self.value(const=const))
            self.take("]")
            return items
        if tok.kind == "punct" and tok.text == "{":
            self.i += 1
            obj = {}
            while not self.peek("}"):
                key = self.name()
                self.take(":")
                obj[key] = self.value(const=const)
            self.take("}")
            return obj
        self.i += 1
        if tok.kind in ("string", "block"):
            return _string_value(tok)
        if tok.kind == "int":
            return int(tok.text)
        if tok.kind == "float":
            return float(tok.text)
        if tok.kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok.text, EnumValue(tok.text))
        self.i -= 1
        raise GraphQLSyntaxError(f"Unexpected {tok.show()}.", tok.line, tok.column)


def parse(source: str) -> Document:
    """Parse an executable GraphQL document; raises `GraphQLSyntaxError`."""
    doc = _Parser(source).document()
    if not doc.operations:
        raise GraphQLSyntaxError("Unexpected <EOF>.", 1, 1)
    return doc
