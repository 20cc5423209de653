"""Parse statutes in the LawRefBook Markdown layout into one knowledge item per article.

    from lawtune.kb.laws import parse_law_file, find_law_files
    for path in find_law_files(["laws/"]):
        law = parse_law_file(path)
        print(law.full_name, law.short_name, law.version, len(law.articles))
        print(law.articles[0].article, law.articles[0].sub, law.articles[0].path, law.articles[0].text)

The layout (https://github.com/LawRefBook/Laws): the first `# ` line is the full title (民法典 adds a second
`# 婚姻家庭编` line: one file per 编), then dated history lines, then `<!-- INFO END -->`; structure headings
`##`/`###`/`####` name 编/分编/章/节; each article is a paragraph that starts with `第X条` or `第X条之一`
followed by a space; the paragraphs up to the next article or heading belong to it (款/项).

Version: the date in the file name (`劳动合同法(2012-12-28).md`) or, without one, the latest adoption or
amendment date in the header (施行 dates are skipped: versions are named after the amendment). LawRefBook
keeps several versions of some laws side by side and does not mark repealed ones; which version is current
is decided by the store over all versions it holds (newest wins) plus the repeal statements in the texts
(see `repeals.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.kb.numerals import NUMERAL_CHARS, to_int

PRC_PREFIX = "中华人民共和国"

# `第一千零七十六条 ` / `第十七条之一 ` at the start of a paragraph; the space keeps paragraphs that merely start
# by referring to an article ("第二百三十四条规定的…") out.
ARTICLE_RE = re.compile(rf"^第([{NUMERAL_CHARS}]+)条(?:之([{NUMERAL_CHARS}]+))?[ \u3000\t]+(.*)$")
HEADING_KIND_RE = re.compile(rf"^第[{NUMERAL_CHARS}]+(分编|编|章|节)")
HEADING_RANK = {"编": 1, "分编": 2, "章": 3, "节": 4}
DATE_IN_NAME_RE = re.compile(r"\((\d{4}-\d{2}-\d{2})\)")
HEADER_DATE_RE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
INFO_END = "<!-- INFO END -->"


@dataclass(frozen=True)
class Article:
    article: int
    sub: int  # 之N as int, 0 for a plain article
    text: str  # the whole article, starting with its own `第X条`
    path: tuple[str, ...] = ()  # 编 / 分编 / 章 / 节 headings it sits under


@dataclass
class LawFile:
    full_name: str
    short_name: str
    version: str  # YYYY-MM-DD, "" if the file gives none
    source: str  # file name it was read from
    articles: list[Article] = field(default_factory=list)


def short_name(full_name: str) -> str:
    """中华人民共和国劳动合同法 → 劳动合同法; names without the prefix are their own short name."""
    name = full_name.strip()
    return name[len(PRC_PREFIX):] if name.startswith(PRC_PREFIX) and len(name) > len(PRC_PREFIX) else name


def find_law_files(sources: Iterable[str | Path]) -> list[Path]:
    """Markdown files under the given files/folders (sorted, `_index.md` stubs skipped); error if one is missing."""
    files: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files.extend(p for p in sorted(source.rglob("*.md")) if p.name != "_index.md" and p.name != "SOURCE.md")
        elif source.is_file():
            files.append(source)
        else:
            raise LawtuneError(f"{source}: no such file or folder (give law Markdown files or folders of them)")
    return files


def parse_law_file(path: str | Path) -> LawFile:
    """Read one LawRefBook Markdown file; a file with no articles (a case, a guide) gives an empty list."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LawtuneError(f"{path}: cannot read as UTF-8 Markdown ({error})") from error
    return parse_law_text(text, source=path.name)


def parse_law_text(text: str, source: str = "") -> LawFile:
    lines = [line.rstrip() for line in text.splitlines()]
    header, body = _split_header(lines)
    titles = [line[2:].strip() for line in header if line.startswith("# ")]
    if not titles:
        raise LawtuneError(f"{source or 'law text'}: no `# title` line; not a LawRefBook law file")
    full = titles[0]
    law = LawFile(full_name=full, short_name=short_name(full), version=_version(source, header), source=source)
    # 民法典's second title (# 婚姻家庭编) is the 编 every article of the file sits under
    path: list[tuple[int, str]] = [(HEADING_RANK["编"], t) for t in titles[1:2]]
    law.articles = list(_articles(body, path))
    return law


def _split_header(lines: list[str]) -> tuple[list[str], list[str]]:
    if INFO_END in lines:
        cut = lines.index(INFO_END)
        return lines[:cut], lines[cut + 1:]
    # no marker: the header runs up to the first heading or article after the title
    for i, line in enumerate(lines[1:], start=1):
        if line.startswith("##") or ARTICLE_RE.match(line):
            return lines[:i], lines[i:]
    return lines, []


def _version(source: str, header: list[str]) -> str:
    match = DATE_IN_NAME_RE.search(source)
    if match:
        return match.group(1)
    dates = [
        f"{int(y):04d}-{int(m):02d}-{int(d):02d}"
        for line in header if "施行" not in line
        for y, m, d in HEADER_DATE_RE.findall(line)
    ]
    return max(dates, default="")


def _articles(body: list[str], path: list[tuple[int, str]]) -> Iterator[Article]:
    current: tuple[int, int, tuple[str, ...]] | None = None
    paragraphs: list[str] = []
    depth_rank: dict[int, int] = {}  # `##` count → rank, learnt from numbered headings (## 第一编 → 编)

    def flush() -> Article | None:
        if current is None:
            return None
        return Article(article=current[0], sub=current[1], text="\n".join(paragraphs), path=current[2])

    for line in body:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            done = flush()
            if done:
                yield done
            current, paragraphs = None, []
            hashes = len(stripped) - len(stripped.lstrip("#"))
            title = " ".join(stripped[hashes:].split())
            if title:
                kind = HEADING_KIND_RE.match(title)
                if kind:
                    rank = depth_rank[hashes] = HEADING_RANK[kind.group(1)]
                else:  # unnumbered (## 附则): the rank numbered headings of that depth have
                    rank = depth_rank.get(hashes, hashes + 1)
                path[:] = [(r, t) for r, t in path if r < rank] + [(rank, title)]
            continue
        match = ARTICLE_RE.match(stripped)
        if match:
            done = flush()
            if done:
                yield done
            sub = to_int(match.group(2)) if match.group(2) else 0
            current = (to_int(match.group(1)), sub, tuple(t for _, t in path))
            paragraphs = [stripped]
        elif current is not None:
            paragraphs.append(stripped)  # 款 / 项 of the article above
    done = flush()
    if done:
        yield done
