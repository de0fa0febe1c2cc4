"""The repository's documentation stands alone: nothing cites a file outside the repository,
and every relative Markdown link in docs/ and README.md leads to a file and heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
# Built from pieces so that this file does not match its own search.
OUTSIDE = ("PROTOCOL" + ".md", "../" + "shared/", "/work/" + "shared")
SKIP_DIRS = {"node_modules", "__pycache__", ".venv", "build", "results", ".hypothesis"}
TEXT_SUFFIXES = {".py", ".md", ".mjs", ".js", ".ts", ".toml", ".txt", ".c", ".h", ".sh", ".json"}
LINK = re.compile(r"\]\(([^()\s]+?\.md)(#[^()\s]*)?\)")
FENCE = re.compile(r"^(```|~~~)")


def scanned_files() -> list[Path]:
    """Text files under src/, tests/, bench/ and docs/, and README.md (not this test)."""
    files = [REPO / "README.md"]
    for top in ("src", "tests", "bench", "docs"):
        for path in sorted((REPO / top).rglob("*")):
            parts = set(path.relative_to(REPO).parts)
            if parts & SKIP_DIRS or any(p.endswith(".egg-info") for p in parts):
                continue
            if path.is_file() and path.suffix in TEXT_SUFFIXES and path.resolve() != THIS:
                files.append(path)
    return files


def test_nothing_cites_files_outside_the_repository() -> None:
    found = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(needle in line for needle in OUTSIDE):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:90]}")
    assert not found, "cites a file outside the repository:\n" + "\n".join(found)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    result = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    fenced = False
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target, anchor in LINK.findall(line):
            if "://" in target:
                continue
            path = (doc.parent / target).resolve()
            if not path.is_file():
                broken.append(f"{number}: {target} does not exist")
            elif anchor and anchor[1:] not in anchors(path):
                broken.append(f"{number}: {target}{anchor}: no such heading")
    assert not broken, f"{doc.relative_to(REPO)}:\n" + "\n".join(broken)


def test_slugs_match_github() -> None:
    assert slug("The load generator's ceiling") == "the-load-generators-ceiling"
    assert slug("Memory after every client left") == "memory-after-every-client-left"
    assert slug("`socket_id` exclusion") == "socket_id-exclusion"
    assert slug("Channel kinds and names") == "channel-kinds-and-names"
