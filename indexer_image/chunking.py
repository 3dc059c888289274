"""Split a file into chunks that fit the embedding model's window, following the code's syntax.

Rules (each line of the file that holds text ends up in at least one chunk, never silently cut):
- In a language with a tree-sitter grammar, every function, method, class, type... is its own
  chunk, named by its symbol (`Outer.inner` for nested ones).
- A definition larger than the budget is split: a container (class, impl, namespace) into its
  header and its members; anything else into consecutive line windows that keep the symbol name.
- Code between definitions (imports, module statements) becomes line windows with no symbol.
- Files in other languages become line windows with a small overlap.
- A single line over the budget (minified code) is cut into pieces on the same line number.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

TokenCounter = Callable[[list[str]], list[int]]

# Overlap between consecutive windows of plain text, in lines.
WINDOW_OVERLAP_LINES = 2
# A small comment or decorator block right above a definition belongs to that definition.
ATTACH_GAP_TOKENS = 48
# Characters per piece when one line alone is over the budget (word-piece tokens are >= 1 char).
LONG_LINE_PIECE_CHARS = 600


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    text: str
    symbol: str | None


@dataclass(frozen=True)
class _Grammar:
    module: str
    function: str
    definitions: frozenset[str]
    containers: frozenset[str]


_GRAMMARS: dict[str, _Grammar] = {
    "python": _Grammar(
        "tree_sitter_python",
        "language",
        frozenset({"function_definition", "class_definition", "decorated_definition"}),
        frozenset({"class_definition", "decorated_definition"}),
    ),
    "javascript": _Grammar(
        "tree_sitter_javascript",
        "language",
        frozenset(
            {
                "function_declaration",
                "generator_function_declaration",
                "class_declaration",
                "method_definition",
                "lexical_declaration",
                "export_statement",
            }
        ),
        frozenset({"class_declaration", "export_statement"}),
    ),
    "typescript": _Grammar(
        "tree_sitter_typescript",
        "language_typescript",
        frozenset(
            {
                "function_declaration",
                "generator_function_declaration",
                "class_declaration",
                "abstract_class_declaration",
                "method_definition",
                "lexical_declaration",
                "export_statement",
                "interface_declaration",
                "type_alias_declaration",
                "enum_declaration",
                "module",
            }
        ),
        frozenset({"class_declaration", "abstract_class_declaration", "export_statement", "module"}),
    ),
    "go": _Grammar(
        "tree_sitter_go",
        "language",
        frozenset({"function_declaration", "method_declaration", "type_declaration"}),
        frozenset(),
    ),
    "java": _Grammar(
        "tree_sitter_java",
        "language",
        frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "method_declaration",
                "constructor_declaration",
            }
        ),
        frozenset({"class_declaration", "interface_declaration", "enum_declaration", "record_declaration"}),
    ),
    "rust": _Grammar(
        "tree_sitter_rust",
        "language",
        frozenset(
            {"function_item", "impl_item", "struct_item", "enum_item", "trait_item", "mod_item", "macro_definition"}
        ),
        frozenset({"impl_item", "trait_item", "mod_item"}),
    ),
    "c": _Grammar(
        "tree_sitter_c",
        "language",
        frozenset({"function_definition", "struct_specifier", "enum_specifier", "type_definition"}),
        frozenset(),
    ),
    "cpp": _Grammar(
        "tree_sitter_cpp",
        "language",
        frozenset(
            {
                "function_definition",
                "class_specifier",
                "struct_specifier",
                "enum_specifier",
                "namespace_definition",
                "template_declaration",
                "type_definition",
            }
        ),
        frozenset({"class_specifier", "struct_specifier", "namespace_definition", "template_declaration"}),
    ),
}
_GRAMMARS["tsx"] = _Grammar(
    "tree_sitter_typescript", "language_tsx", _GRAMMARS["typescript"].definitions, _GRAMMARS["typescript"].containers
)

# Where a definition's name hides, per node type, when it is not the `name` field.
_NAME_PATHS: dict[str, tuple[str, ...]] = {
    "impl_item": ("type",),
    "decorated_definition": ("definition", "name"),
    "export_statement": ("declaration", "name"),
    "template_declaration": (),
    "function_definition": ("declarator",),
    "type_definition": ("declarator",),
}


def supported_languages() -> frozenset[str]:
    return frozenset(_GRAMMARS)


@cache
def _parser(language: str) -> Any:
    import tree_sitter

    grammar = _GRAMMARS[language]
    module = importlib.import_module(grammar.module)
    return tree_sitter.Parser(tree_sitter.Language(getattr(module, grammar.function)()))


def _text(node: Any) -> str:
    raw: bytes = node.text or b""
    return raw.decode("utf-8", errors="replace")


def _declarator_name(node: Any) -> str | None:
    """C/C++: follow declarator fields (pointer, function, reference) down to the identifier."""
    current = node
    for _ in range(8):
        inner = current.child_by_field_name("declarator")
        if inner is None:
            break
        current = inner
    if current.type in {"identifier", "field_identifier", "qualified_identifier", "type_identifier", "destructor_name"}:
        return _text(current)
    return None


def _symbol_name(node: Any) -> str | None:
    kind = node.type
    if kind in {"function_definition", "type_definition"} and node.child_by_field_name("name") is None:
        return _declarator_name(node)
    if kind == "decorated_definition":
        inner = node.child_by_field_name("definition")
        return _symbol_name(inner) if inner is not None else None
    if kind == "export_statement":
        inner = node.child_by_field_name("declaration")
        return _symbol_name(inner) if inner is not None else None
    if kind == "template_declaration":
        for child in node.named_children:
            if child.type != "template_parameter_list":
                return _symbol_name(child)
        return None
    if kind == "lexical_declaration":
        for child in node.named_children:
            if child.type == "variable_declarator":
                name = child.child_by_field_name("name")
                return _text(name) if name is not None else None
        return None
    if kind == "impl_item":
        target = node.child_by_field_name("type")
        trait = node.child_by_field_name("trait")
        if target is None:
            return None
        return f"{_text(trait)} for {_text(target)}" if trait is not None else _text(target)
    if kind == "type_declaration":
        for child in node.named_children:
            name = child.child_by_field_name("name")
            if name is not None:
                return _text(name)
        return None
    name = node.child_by_field_name("name")
    return _text(name) if name is not None else None


@dataclass(frozen=True)
class _Definition:
    start_row: int  # 0-based, inclusive
    end_row: int  # 0-based, inclusive
    symbol: str | None
    node: Any


def _definitions(node: Any, grammar: _Grammar, prefix: str | None) -> list[_Definition]:
    """The definitions directly inside `node` (looking through blocks and bodies, not into defs)."""
    found: list[_Definition] = []
    for child in node.named_children:
        if child.type in grammar.definitions:
            if child.type == "lexical_declaration" and not _declares_function(child):
                continue
            if child.type == "export_statement" and child.child_by_field_name("declaration") is None:
                continue
            name = _symbol_name(child)
            symbol = f"{prefix}.{name}" if prefix and name else (name or prefix)
            found.append(_Definition(child.start_point[0], child.end_point[0], symbol, child))
        elif child.child_count and child.type not in {"string", "comment", "template_string"}:
            found.extend(_definitions(child, grammar, prefix))
    return found


def _declares_function(node: Any) -> bool:
    for child in node.named_children:
        if child.type == "variable_declarator":
            value = child.child_by_field_name("value")
            if value is not None and value.type in {"arrow_function", "function_expression", "function", "class"}:
                return True
    return False


class _Builder:
    def __init__(self, lines: list[str], line_tokens: list[int], budget: int) -> None:
        self.lines = lines
        self.line_tokens = line_tokens
        self.budget = budget
        self.chunks: list[Chunk] = []

    def tokens(self, start: int, end: int) -> int:
        return sum(self.line_tokens[start : end + 1])

    def emit(self, start: int, end: int, symbol: str | None, overlap: int = 0) -> None:
        """Rows start..end (0-based, inclusive) as one chunk, or as windows when over budget."""
        while start <= end and not self.lines[start].strip():
            start += 1
        while end >= start and not self.lines[end].strip():
            end -= 1
        if start > end:
            return
        if self.tokens(start, end) <= self.budget:
            self._add(start, end, symbol)
            return
        for window_start, window_end in self._windows(start, end, overlap):
            if window_start == window_end and self.line_tokens[window_start] > self.budget:
                self._add_long_line(window_start, symbol)
            else:
                self._add(window_start, window_end, symbol)

    def _windows(self, start: int, end: int, overlap: int) -> Iterator[tuple[int, int]]:
        row = start
        while row <= end:
            used = 0
            stop = row
            while stop <= end and (stop == row or used + self.line_tokens[stop] <= self.budget):
                used += self.line_tokens[stop]
                stop += 1
            yield row, stop - 1
            if stop > end:
                return
            row = max(row + 1, stop - overlap)

    def _add(self, start: int, end: int, symbol: str | None) -> None:
        text = "\n".join(self.lines[start : end + 1])
        self.chunks.append(Chunk(start + 1, end + 1, text, symbol))

    def _add_long_line(self, row: int, symbol: str | None) -> None:
        line = self.lines[row]
        for offset in range(0, len(line), LONG_LINE_PIECE_CHARS):
            piece = line[offset : offset + LONG_LINE_PIECE_CHARS]
            if piece.strip():
                self.chunks.append(Chunk(row + 1, row + 1, piece, symbol))


def _emit_region(builder: _Builder, node: Any, start: int, end: int, grammar: _Grammar, symbol: str | None) -> None:
    """Rows start..end of `node`'s body: its definitions as chunks, the code between them too."""
    definitions = [d for d in _definitions(node, grammar, symbol) if d.start_row >= start and d.end_row <= end]
    row = start
    for definition in definitions:
        # A short comment block touching the definition (no blank line between) goes with it.
        def_start = definition.start_row
        while def_start > row and builder.lines[def_start - 1].strip():
            def_start -= 1
        too_long = builder.tokens(def_start, definition.start_row - 1) > ATTACH_GAP_TOKENS
        container_header = symbol is not None and def_start == start  # e.g. `class X:` line: its own chunk
        if too_long or container_header:
            def_start = definition.start_row
        if def_start - 1 >= row:
            builder.emit(row, def_start - 1, symbol, WINDOW_OVERLAP_LINES)
        _emit_definition(builder, definition, grammar, def_start)
        row = definition.end_row + 1
    if row <= end:
        builder.emit(row, end, symbol, WINDOW_OVERLAP_LINES)


_WRAPPERS = {"decorated_definition": "definition", "export_statement": "declaration"}


def _unwrap(node: Any) -> Any:
    """The declaration inside a decorator or export wrapper (its members are the inner node's)."""
    while node.type in _WRAPPERS:
        inner = node.child_by_field_name(_WRAPPERS[node.type])
        if inner is None:
            return node
        node = inner
    if node.type == "template_declaration":
        for child in node.named_children:
            if child.type != "template_parameter_list":
                return child
    return node


def _emit_definition(builder: _Builder, definition: _Definition, grammar: _Grammar, start: int) -> None:
    end = definition.end_row
    if builder.tokens(start, end) <= builder.budget:
        builder.emit(start, end, definition.symbol)
        return
    inner = _unwrap(definition.node)
    if inner.type in grammar.containers and _definitions(inner, grammar, definition.symbol):
        _emit_region(builder, inner, start, end, grammar, definition.symbol)
        return
    builder.emit(start, end, definition.symbol, overlap=0)


def chunk_text(text: str, language: str | None, count_tokens: TokenCounter, budget: int) -> list[Chunk]:
    """Chunks of `text`, each at most `budget` tokens (by `count_tokens`) except unsplittable lines."""
    lines = text.split("\n")
    builder = _Builder(lines, count_tokens(lines), budget)
    grammar = _GRAMMARS.get(language or "")
    if grammar is None:
        builder.emit(0, len(lines) - 1, None, WINDOW_OVERLAP_LINES)
        return builder.chunks
    tree = _parser(language).parse(text.encode("utf-8", errors="replace"))
    _emit_region(builder, tree.root_node, 0, len(lines) - 1, grammar, None)
    return builder.chunks
