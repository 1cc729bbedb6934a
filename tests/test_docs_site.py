"""The built site reads as a user sees it in a browser, with no network.

Each check looks for one way a page has gone wrong in the rendered HTML, where
the Markdown source looks fine: a doctest that Markdown read as quotes, math
left as raw TeX or reST, a script or stylesheet from another host (the site
must work offline), notes about how the package was made instead of about the
package, a list item run into the paragraph before it, a table too wide for
the page, a home page without GC's formula, an API page without the
optimizers' constructors.

The checks run on small pieces of HTML everywhere, and on the whole site when
`KERAS_GC_SITE` names a built one, as `nox -s docs` does after building it.
"""

import html.parser
import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_free

SITE = os.environ.get("KERAS_GC_SITE")
# Words about the work that made the package, not about the package.
WORKSHOP = re.compile(
    r"\bissue \d+|\bengineers?\b|\bno GPU was lent|\blent to\b|\bquiet day"
    r"|\bthis work\b|\bthe lead\b|\bour machine\b|\bother tenants\b",
    re.IGNORECASE,
)
# Columns a table can have and still fit a 1280 px page beside the navigation.
MAX_COLUMNS = 8
_VOID = {"br", "hr", "img", "input", "link", "meta", "source", "wbr", "col", "path"}


class _Page(html.parser.HTMLParser):
    """What the checks need from one page: its article's text outside code,
    the external scripts and stylesheets, quotes inside quotes, math elements,
    the ids of headings, and each table's column count."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.article_depth: int | None = None
        self.prose: list[str] = []  # text in the article, outside code and math
        self.blocks: list[str] = []  # each <p> and <li>'s own text, source lines kept
        self.external: list[str] = []
        self.nested_quotes = 0
        self.math = 0
        self.ids: set[str] = set()
        self.columns: list[int] = []
        self._row = 0
        self._block: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and _is_external(found.get("src")):
            self.external.append(f"<script src={found['src']}>")
        stylesheet = "stylesheet" in (found.get("rel") or "")
        if tag == "link" and stylesheet and _is_external(found.get("href")):
            self.external.append(f"<link href={found['href']}>")
        if tag == "article" and self.article_depth is None:
            self.article_depth = len(self.stack)
        if tag == "blockquote" and "blockquote" in self.stack:
            self.nested_quotes += 1
        if tag == "math":
            self.math += 1
        if found.get("id"):
            self.ids.add(found["id"] or "")
        if tag == "tr":
            self._row = 0
        if tag in ("td", "th"):
            self._row += 1
        if tag in ("p", "li"):
            self._block.append([])
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack and self.stack.pop() != tag:
            pass
        if tag == "tr":
            self.columns.append(self._row)
        if tag in ("p", "li") and self._block:
            self.blocks.append("".join(self._block.pop()))
        if self.article_depth is not None and len(self.stack) <= self.article_depth:
            self.article_depth = None if tag == "article" else self.article_depth

    def handle_data(self, data: str) -> None:
        if self.article_depth is None:
            return
        if {"code", "pre", "math", "script", "style"} & set(self.stack):
            return
        self.prose.append(data)
        if self._block:
            self._block[-1].append(data)


def _is_external(address: str | None) -> bool:
    return bool(address) and re.match(r"(https?:)?//", address or "") is not None


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def problems(name: str, text: str) -> list[str]:
    """Every problem of one built page, each naming the page and what is wrong."""
    page = parse(text)
    prose = " ".join(page.prose)
    found = []
    if page.nested_quotes or ">>>" in prose:
        found.append(f"{name}: a doctest rendered as quotes, not as code")
    for raw in sorted(set(re.findall(r"\.\. math::|:math:`|\\\[|\\\(|\$\$", prose))):
        found.append(f"{name}: raw math {raw!r} in the text; it must render")
    for tag in page.external:
        found.append(f"{name}: {tag} is from another host; the site must work offline")
    for words in sorted({m.group() for m in WORKSHOP.finditer(prose)}):
        found.append(f"{name}: {words!r} is about the work, not the package")
    for block in page.blocks:
        run_in = re.search(r"\n\s*(?:[-*+]|\d+\.) \S.*", block)
        if run_in:
            found.append(f"{name}: a list item run into the text: {run_in.group()!r}")
    if page.columns and max(page.columns) > MAX_COLUMNS:
        found.append(
            f"{name}: a table of {max(page.columns)} columns is wider than a 1280 px "
            f"page allows (at most {MAX_COLUMNS})"
        )
    return found


def home_problems(text: str) -> list[str]:
    """The home page says what GC is: its formula, rendered, and the paper."""
    page = parse(text)
    found = []
    if not page.math:
        found.append("index.html: no rendered formula (<math>) on the home page")
    if "2004.01461" not in text:
        found.append("index.html: no link to the paper (arXiv 2004.01461)")
    return found


def api_problems(text: str, constructors: list[str]) -> list[str]:
    """The API page lists every constructor of `keras_gc.optimizers`."""
    ids = parse(text).ids
    return [
        f"api/index.html: no entry for keras_gc.optimizers.{name}"
        for name in constructors
        if f"keras_gc.optimizers.{name}" not in ids
    ]


# What the checks must catch, each once, as mkdocs and mkdocstrings render it.
_ARTICLE = '<article class="md-content__inner">{}</article>'
BAD = {
    "doctest as quotes": "<blockquote><blockquote><blockquote><p>import numpy as np"
    "</p></blockquote></blockquote></blockquote>",
    "doctest prompt in text": "<p>&gt;&gt;&gt; import keras</p>",
    "reST math": "<p>.. math::</p><p>\\Phi(g) = g</p>",
    "TeX left raw": '<div class="arithmatex">\\[ \\Phi(g) = g \\]</div>',
    "CDN script": '<script src="https://unpkg.com/mathjax@3/es5/tex-mml-chtml.js">'
    "</script>",
    "font stylesheet": '<link rel="stylesheet" href="https://fonts.googleapis.com/css">',
    "issue number": "<p>Goal (issue 16): under the main command</p>",
    "engineers": "<p>measured while other engineers' jobs shared it</p>",
    "no GPU lent": "<p>Not measured: no GPU was lent to this work.</p>",
    "quiet day": "<p>load average 0.7 to 1.8, a quiet day</p>",
    "list run in": "<ul><li><p>no fusion to hide it in.\n- <strong>The floor"
    "</strong> bounds the step.</p></li></ul>",
    "wide table": "<table><tr>" + "<td>1</td>" * 10 + "</tr></table>",
}
GOOD = (
    '<div class="highlight"><pre><code>&gt;&gt;&gt; import keras\n'
    "$$ not math in code $$</code></pre></div>"
    "<p>A formula: <math><mi>g</mi></math>, see issue trackers; a dash - here.</p>"
    '<script src="../assets/javascripts/bundle.js"></script>'
    "<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>"
    "<table><tr>" + "<td>1</td>" * MAX_COLUMNS + "</tr></table>"
)


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_problem_is_caught(case):
    assert problems("page.html", _ARTICLE.format(BAD[case]))


def test_a_good_page_passes():
    assert problems("page.html", _ARTICLE.format(GOOD)) == []


def test_the_home_page_needs_the_formula_and_the_paper():
    assert len(home_problems(_ARTICLE.format("<p>GC</p>"))) == 2
    good = '<math><mi>Φ</mi></math><a href="https://arxiv.org/abs/2004.01461">'
    assert home_problems(_ARTICLE.format(good)) == []


def test_the_api_page_needs_every_constructor():
    page = '<h3 id="keras_gc.optimizers.Adam">Adam</h3>'
    assert api_problems(page, ["Adam", "SGD"]) == [
        "api/index.html: no entry for keras_gc.optimizers.SGD"
    ]


@pytest.mark.skipif(SITE is None, reason="set KERAS_GC_SITE to a built site")
def test_the_built_site():
    import keras_gc

    site = Path(SITE or "")
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10, f"{site} holds {len(pages)} pages; build it first"
    found = []
    for path in pages:
        found += problems(str(path.relative_to(site)), path.read_text())
    found += home_problems((site / "index.html").read_text())
    constructors = list(keras_gc.optimizers.__all__)
    found += api_problems((site / "api" / "index.html").read_text(), constructors)
    assert not found, "\n".join(found)
