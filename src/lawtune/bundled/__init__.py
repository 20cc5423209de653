"""Data and configs shipped inside the lawtune package, found with `importlib.resources`.

    from lawtune import bundled
    bundled.sample_csv()          # the 3,000-question Q&A sample (SOURCE.md: licence and origin)
    bundled.benchmarks_dir()      # the MCQ / LawBench samples (benchmarks/SOURCE.md)
    bundled.config("demo")        # configs/demo.yaml
    bundled.article_cited()       # 1,000 consultations with the articles their answers cite (article_cited/SOURCE.md)

They live under src/lawtune/bundled/ so that an installed wheel has them; the repository's top-level
`data/legal_qa_sample.csv`, `data/benchmarks/`, `data/article_cited/` and `configs/` are symlinks to these files, so the commands in
the docs work from a checkout as before.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def root() -> Path:
    # a wheel or an editable install puts the package on disk as plain files, so this is a real folder
    return Path(str(resources.files("lawtune.bundled")))


def sample_csv() -> Path:
    return root() / "legal_qa_sample.csv"


def article_cited() -> Path:
    """lawyer-llama's legal_counsel_with_article_v2.json: the demo's RAG training examples and held-out --kb set."""
    return root() / "article_cited" / "legal_counsel_with_article_v2.json"


def sample_source_note() -> Path:
    return root() / "SOURCE.md"


def benchmarks_dir() -> Path:
    return root() / "benchmarks"


def configs_dir() -> Path:
    return root() / "configs"


def config(name: str) -> Path:
    """`demo` → the bundled configs/demo.yaml."""
    return configs_dir() / f"{name}.yaml"
