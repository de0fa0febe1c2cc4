"""The import contract of docs/design.md ("Layers"), checked on the source: what each module or
package of ``ressonance`` may import of the others, that ``protocol/`` is sans-I/O (standard
library only), that the node reaches brokers and app stores only through their ports, and that
each third-party library is imported by exactly one module."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ressonance"
THIRD_PARTY_HOME = {
    "asyncpg": "storage/postgres.py",
    "cryptography": "apps/crypto.py",
    "httptools": "transport/http11.py",
    "nats": "scaling/nats.py",
    "prometheus_client": "metrics/prometheus.py",
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


# What each unit (a top-level module or a package) may import of the others; imports inside a
# unit are free. A new unit must be placed here: the test fails until it is.
BASE = {"errors", "models", "exchange", "faultlog"}
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "exchange": set(),
    "faultlog": set(),
    "libc": set(),
    "models": {"errors"},
    "protocol": {"errors", "models"},
    "transport": {"errors", "exchange", "faultlog", "protocol"},
    "scaling": {"errors", "faultlog"},
    "apps": {"errors", "models", "storage"},
    "storage": {"errors"},
    "node": {"errors", "models", "faultlog", "protocol", "scaling", "apps"},
    "http": {"__version__", "errors", "exchange", "models", "protocol", "node", "apps"},
    # metrics read the node, the public listener and the API at scrape time
    "metrics": {"__version__", "errors", "node", "transport", "http"},
    "dashboard": set(),  # static files
    # webhook jobs, their queues and their delivery; the app of a job through the AppStore port
    "webhooks": {"errors", "models", "protocol", "storage", "apps"},
    "config": {"errors", "models", "apps", "scaling", "storage"},
    "reclaim": {"libc"},
    "server": BASE
    | {"protocol", "transport", "scaling", "apps", "node", "http", "config"}
    | {"reclaim", "metrics", "dashboard", "storage", "webhooks"},
    "runtime": {"config", "server"},
    "workers": {"config", "libc"},
    "admin_client": {"errors"},  # the management API's HTTP client (ressonance apps --server)
    "apps_cli": {"admin_client", "apps", "config", "errors", "models", "server"},
    "cli": {"__version__", "apps_cli", "config", "errors", "runtime", "workers"},
    "__main__": {"cli"},
    "__init__": set(),
}
# Within a unit that may be imported, only its ports: adapters are chosen at the composition
# root (server.py, config.py), so the node never depends on Redis, NATS or where apps live.
PORTS_ONLY = {
    ("node", "scaling"): {"scaling.base"},
    ("node", "apps"): {"apps.base"},
    # the management API drives the app manager (apps/manage.py), as the CLI does
    ("http", "apps"): {"apps.base", "apps.manage", "apps.validation"},
    ("config", "storage"): {"storage.factory"},
    ("webhooks", "apps"): {"apps.base"},
    ("webhooks", "storage"): {"storage.base"},
}


def unit_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def internal_imports(path: Path) -> set[str]:
    """The ``ressonance`` modules ``path`` imports, as ``unit.module`` (``unit`` for a
    top-level module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "ressonance" and len(parts) > 1:
                found.add(".".join(parts[1:3]))
            elif parts[0] == "ressonance" and isinstance(node, ast.ImportFrom):
                found.update(alias.name for alias in node.names)
    return found


def test_each_unit_imports_only_what_its_layer_may() -> None:
    broken = []
    for path in SRC.rglob("*.py"):
        unit = unit_of(path)
        assert unit in MAY_IMPORT, f"{unit}: place it in MAY_IMPORT (docs/design.md Layers)"
        for module in internal_imports(path):
            target = module.split(".")[0]
            if target == unit:
                continue
            if target not in MAY_IMPORT[unit]:
                broken.append(f"{path.relative_to(SRC)} imports {module}")
            ports = PORTS_ONLY.get((unit, target))
            if ports is not None and module not in ports:
                broken.append(f"{path.relative_to(SRC)} imports the adapter {module}")
    assert not broken, broken


def test_the_contract_is_acyclic() -> None:
    """Layers import downward only: no unit can reach itself through what it may import."""
    for start in MAY_IMPORT:
        seen: set[str] = set()
        todo = list(MAY_IMPORT[start])
        while todo:
            unit = todo.pop()
            assert unit != start, f"{start} can reach itself"
            if unit not in seen:
                seen.add(unit)
                todo.extend(MAY_IMPORT.get(unit, ()))
