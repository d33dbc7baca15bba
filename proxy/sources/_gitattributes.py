"""Which files of a git tree are Git LFS pointers: ``.gitattributes`` rules and pointer text.

GitHub's tree API lists what git stores, and for a file tracked by Git LFS that is a small
*pointer* (``version https://git-lfs.github.com/spec/v1`` / ``oid sha256:<hex>`` /
``size <n>``), not the content. Whether git (and GitHub's media host) treats a file as LFS is
decided by its ``filter`` attribute, so hoard decides the same way:

* :class:`LfsRules` reads every ``.gitattributes`` of the tree, with git's precedence (a file
  deeper in the tree overrides one above it, a later line an earlier one) and gitignore-style
  patterns (a pattern without ``/`` matches a file name at any depth below its
  ``.gitattributes``; one with ``/`` is anchored there; ``**/``, ``/**/`` and ``/**`` span
  folders); a path is LFS-tracked when its last matching ``filter`` setting is ``lfs``;
* only a tracked file smaller than :data:`POINTER_MAX` can hold a pointer (git-lfs never writes
  a larger one), and only bytes that :func:`parse_pointer` accepts are one. A tracked file
  whose bytes are not a pointer (committed before it was tracked) is an ordinary file, as a
  checkout would show it.

Nothing here does I/O: the GitHub source fetches the ``.gitattributes`` and candidate files
(verified against their git blob ids first) and asks these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["POINTER_MAX", "LfsRules", "parse_pointer", "glob_regex"]

#: git-lfs refuses to read a pointer of 1024 bytes or more ("pointer file too big")
POINTER_MAX = 1024
_VERSIONS = (b"version https://git-lfs.github.com/spec/v1", b"version https://hawser.github.com/spec/v1")
_OID = re.compile(r"sha256:([0-9a-f]{64})")
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """``(sha256 hex, size)`` of a Git LFS pointer, or None if ``data`` is not one.

    A pointer is UTF-8 ``key value`` lines, each ending in a newline, the ``version`` line
    first, with an ``oid sha256:<64 hex>`` and a decimal ``size`` (other keys, the
    extensions, are allowed and ignored)."""
    if len(data) >= POINTER_MAX or not data.endswith(b"\n") or not data.startswith(_VERSIONS):
        return None
    try:
        lines = data.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        return None
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(" ")
        if not sep or not key or key in fields:
            return None
        fields[key] = value
    oid, size = _OID.fullmatch(fields.get("oid", "")), fields.get("size", "")
    if oid is None or not _SIZE.fullmatch(size):
        return None
    return oid.group(1), int(size)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-style glob as a regular expression over ``/``-separated paths:
    ``*`` and ``?`` stay within one folder, ``[...]`` is a class (``!`` negates), ``\\``
    escapes, a leading ``**/`` matches in any folder, ``/**/`` spans zero or more folders and
    a trailing ``/**`` matches everything inside."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif pattern[i] == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (close := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : close]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("(?!/)[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = close + 1
        elif pattern[i] == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return re.compile(r"(?!)")  # a class git would not read either: matches nothing


@dataclass(frozen=True)
class _Rule:
    base: str  # the folder of the .gitattributes ("" for the root)
    regex: re.Pattern[str]
    by_name: bool  # a pattern without "/": matched against the file name
    filter: str | None  # the filter value it sets, None when it unsets it

    def matches(self, path: str) -> bool:
        if self.base:
            if not path.startswith(self.base + "/"):
                return False
            path = path[len(self.base) + 1 :]
        target = path.rsplit("/", 1)[-1] if self.by_name else path
        return self.regex.fullmatch(target) is not None


def _unquote(text: str) -> tuple[str, str]:
    """A C-quoted pattern at the start of a line: (pattern, rest of the line)."""
    out, i = [], 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), text[i + 1 :]


def _line_rule(base: str, line: str) -> _Rule | None:
    """The ``filter`` setting of one ``.gitattributes`` line, or None if it sets none."""
    line = line.strip()
    if not line or line.startswith("#") or line.startswith("[attr]"):
        return None
    if line.startswith('"'):
        pattern, rest = _unquote(line)
    else:
        pattern, _, rest = line.replace("\t", " ").partition(" ")
    value: str | None | bool = False  # False: this line says nothing of filter
    for token in rest.split():
        if token.startswith("filter="):
            value = token[len("filter=") :]
        elif token in ("-filter", "!filter", "filter"):
            value = None
    if value is False or not pattern or pattern.endswith("/"):
        return None  # gitattributes patterns never name folders
    setting = value if isinstance(value, str) and value else None
    return _Rule(base, glob_regex(pattern.lstrip("/")), "/" not in pattern, setting)


class LfsRules:
    """The ``filter=lfs`` settings of a tree's ``.gitattributes`` files."""

    def __init__(self, rules: list[_Rule]) -> None:
        self.rules = rules

    @classmethod
    def parse(cls, files: Mapping[str, bytes]) -> LfsRules:
        """From ``{path of a .gitattributes: its bytes}``: shallow files first, so that rules
        of deeper ones (read later) take precedence, as in git."""
        rules: list[_Rule] = []
        for path in sorted(files, key=lambda p: (p.count("/"), p)):
            base = path.rpartition("/")[0]
            for line in files[path].decode("utf-8", "replace").splitlines():
                rule = _line_rule(base, line)
                if rule is not None:
                    rules.append(rule)
        return cls(rules)

    def is_lfs(self, path: str) -> bool:
        """True if the last rule setting ``filter`` for ``path`` sets it to ``lfs``."""
        value: str | None = None
        for rule in self.rules:
            if rule.matches(path):
                value = rule.filter
        return value == "lfs"

    def __bool__(self) -> bool:
        return any(rule.filter == "lfs" for rule in self.rules)
