"""The layer rules of docs/design.md, checked on the source: ``protocol/`` is sans-I/O
(standard library only) and each third-party library is imported by exactly one module."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ressonance"
THIRD_PARTY_HOME = {
    "httptools": "transport/http11.py",
    "nats": "scaling/nats.py",
    "redis": "scaling/redis.py",
    "uvloop": "runtime.py",
    "websockets": "transport/frames.py",
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_protocol_imports_only_the_standard_library() -> None:
    for path in (SRC / "protocol").glob("*.py"):
        outside = {
            name
            for name in imports(path)
            if name not in sys.stdlib_module_names and name != "ressonance"
        }
        assert not outside, f"{path.name} imports {outside}"
        assert "asyncio" not in imports(path), path.name


def test_each_third_party_library_lives_in_one_module() -> None:
    users: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        for name in imports(path):
            if name not in sys.stdlib_module_names and name != "ressonance":
                users[name].add(path.relative_to(SRC).as_posix())
    assert dict(users) == {lib: {home} for lib, home in THIRD_PARTY_HOME.items()}


def test_node_does_not_import_the_edge() -> None:
    for path in (SRC / "node").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "ressonance.transport" not in source and "ressonance.http" not in source
