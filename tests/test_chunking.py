"""Syntax-aware chunking: symbols, budgets, and no text silently dropped."""

from __future__ import annotations

import itertools

import pytest

from codebase_mcp.embedding import Embedder, get_embedder
from indexer_image.chunking import chunk_text
from tests import support


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


def symbols(text: str, language: str, embedder: Embedder, budget: int = 240) -> set[str | None]:
    return {chunk.symbol for chunk in chunk_text(text, language, embedder.count_tokens, budget)}


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        ("python", support.PYTHON_BILLING, {"compute_invoice_total", "PaymentGateway"}),
        ("typescript", support.TYPESCRIPT_AUTH, {"Session", "verifyPasswordHash", "SessionStore"}),
        ("go", support.GO_SERVER, {"HealthHandler", "RateLimiter", "Allow"}),
        ("java", support.JAVA_QUEUE, {"RetryQueue"}),
        ("rust", support.RUST_PARSER, {"Tokenizer", "parse_configuration_file"}),
        ("c", support.C_RING, {"ring_buffer", "ring_buffer_push"}),
        ("javascript", "const add = (a, b) => a + b;\nfunction sub(a, b) { return a - b }\n", {"add", "sub"}),
        ("cpp", "namespace geo { double area(double r) { return 3.14 * r * r; } }\n", {"geo"}),
    ],
)
def test_definitions_become_named_chunks(language: str, source: str, expected: set[str], embedder: Embedder) -> None:
    assert expected <= symbols(source, language, embedder)


def test_large_class_is_split_into_members(embedder: Embedder) -> None:
    methods = "\n".join(
        f"    def method_{i}(self, value):\n        return value * {i} + sum(range({i}))\n" for i in range(30)
    )
    source = f"class Calculator:\n    '''Many methods.'''\n{methods}"
    chunks = chunk_text(source, "python", embedder.count_tokens, 120)
    names = {chunk.symbol for chunk in chunks}
    assert "Calculator" in names  # the class header
    assert {f"Calculator.method_{i}" for i in range(30)} <= names
    assert all(sum(embedder.count_tokens([chunk.text])) <= 130 for chunk in chunks)


def test_long_function_is_split_and_keeps_its_name(embedder: Embedder) -> None:
    body = "\n".join(f"    total += compute_step_{i}(value, {i})" for i in range(200))
    source = f"def enormous(value):\n    total = 0\n{body}\n    return total\n"
    chunks = chunk_text(source, "python", embedder.count_tokens, 200)
    assert len(chunks) > 3
    assert {chunk.symbol for chunk in chunks} == {"enormous"}
    covered = {line for chunk in chunks for line in range(chunk.start_line, chunk.end_line + 1)}
    assert covered == set(range(1, source.count("\n") + 1))


@pytest.mark.parametrize("language", ["python", "go", "text", None])
def test_every_non_blank_line_is_in_some_chunk(language: str | None, embedder: Embedder) -> None:
    source = support.PYTHON_BILLING if language == "python" else support.GO_SERVER
    chunks = chunk_text(source, language, embedder.count_tokens, 60)
    covered = {line for chunk in chunks for line in range(chunk.start_line, chunk.end_line + 1)}
    wanted = {number for number, line in enumerate(source.split("\n"), start=1) if line.strip()}
    assert wanted <= covered
    for chunk in chunks:
        lines = source.split("\n")[chunk.start_line - 1 : chunk.end_line]
        assert chunk.text == "\n".join(lines)


def test_plain_text_windows_overlap(embedder: Embedder) -> None:
    source = "\n".join(f"paragraph line {i} with several words in it" for i in range(80))
    chunks = chunk_text(source, "markdown", embedder.count_tokens, 100)
    assert len(chunks) > 2
    for previous, following in itertools.pairwise(chunks):
        assert following.start_line <= previous.end_line  # overlapping windows
        assert following.start_line > previous.start_line


def test_a_minified_line_is_cut_not_dropped(embedder: Embedder) -> None:
    line = ";".join(f"var v{i}=f{i}(x{i})" for i in range(600))
    chunks = chunk_text(line, "javascript", embedder.count_tokens, 100)
    assert len(chunks) > 1
    assert "".join(chunk.text for chunk in chunks) == line
    assert {(chunk.start_line, chunk.end_line) for chunk in chunks} == {(1, 1)}
