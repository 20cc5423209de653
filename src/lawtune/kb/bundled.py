"""The statutes shipped inside the lawtune package (see laws/SOURCE.md), for the demo, tests and `kb build`.

    from lawtune.kb.bundled import bundled_law_paths
    build(bundled_law_paths(), "kb.sqlite")     # what `lawtune kb build -o kb.sqlite` does with no SRC
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_laws_dir() -> Path:
    # the package is installed as plain files (wheel or editable), so the resource is a real folder
    return Path(str(resources.files("lawtune.kb") / "laws"))


def bundled_law_paths() -> list[Path]:
    """The bundled law Markdown files, sorted (SOURCE.md excluded)."""
    return sorted(p for p in bundled_laws_dir().rglob("*.md") if p.name != "SOURCE.md")
