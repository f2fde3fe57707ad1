"""Every relative link in README.md and docs/ resolves inside the repository.

A clone has only the repository: a link to a file that moved, or to ``../shared`` (a folder next
to the checkout on the machine where the docs were written), is a dead end for its reader.
Anchors (``page.md#section``) must name a heading of the target page, as GitHub derives them.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: inline links and images: [text](target) / ![alt](target), target up to a space or ")"
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else re.sub(r"`[^`]*`", "``", line))
    return "\n".join(lines)


def links(path: Path) -> list[str]:
    return LINK.findall(without_code(path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    kept = "".join(
        ch
        for ch in text
        if ch in "-_ " or unicodedata.category(ch)[0] in ("L", "N") or ch.isalnum()
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def check(path: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``path``) is broken, or ``None`` when it resolves."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
        return None
    if "shared/" in target.replace("\\", "/") and ".." in target:
        return "points outside the repository (../shared)"
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    try:
        resolved.relative_to(ROOT)
    except ValueError:
        return "points outside the repository"
    if not resolved.exists():
        return "no such file or folder"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"no heading #{anchor} in {resolved.relative_to(ROOT)}"
    return None


def test_docs_when_scanned_then_readme_and_docs_pages_are_found() -> None:
    files = doc_files()
    assert ROOT / "README.md" in files
    assert ROOT / "docs" / "README.md" in files
    assert sum(len(links(f)) for f in files) > 50


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_when_links_followed_then_each_resolves_inside_the_repository(path: Path) -> None:
    broken = [f"{target}: {why}" for target in links(path) if (why := check(path, target))]
    assert broken == [], f"{path.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_when_read_then_it_never_mentions_the_shared_folder(path: Path) -> None:
    assert "../shared" not in path.read_text(encoding="utf-8")


def test_check_when_link_is_broken_then_it_says_why(tmp_path: Path) -> None:
    page = ROOT / "docs" / "README.md"
    assert check(page, "../shared/DESIGN.md") is not None
    assert check(page, "no-such-page.md") == "no such file or folder"
    assert check(page, "architecture.md#no-such-heading") is not None
    assert check(page, "../../outside.md") == "points outside the repository"
    assert check(page, "architecture.md#principles") is None
    assert check(page, "https://example.org/x") is None


def test_slug_when_heading_has_code_and_links_then_matches_github() -> None:
    assert slug("Model registry ([`huracan/storage/model_registry.py`](../x.py))") == (
        "model-registry-huracanstoragemodel_registrypy"
    )
    assert slug("Fills are the truth (target)") == "fills-are-the-truth-target"
    assert slug("0001 — Exactly-once") == "0001--exactly-once"
