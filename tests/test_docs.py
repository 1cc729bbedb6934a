"""Every Python block of the README and the docs runs, so examples cannot rot.

A page's blocks run in order, in one namespace, in a fresh process (a page may
set a global dtype policy or a device count). A block that only makes sense on
some backends says so on the line before it: `<!-- runs-on: torch -->`.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!-- runs-on: (?P<backends>[a-z, ]+) -->\n)?```python\n(?P<code>.*?)^```",
    re.DOTALL | re.MULTILINE,
)
_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for name, code in json.load(sys.stdin):
    exec(compile(code, name, "exec"), namespace)
"""


def blocks(text: str) -> list[tuple[int, set[str] | None, str]]:
    """Each Python block: its first code line, its backends (None: all), its code."""
    found = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        backends = match.group("backends")
        chosen = None if backends is None else {b.strip() for b in backends.split(",")}
        found.append((line, chosen, match.group("code")))
    return found


def test_blocks_are_found_with_their_backends():
    text = "a\n```python\nx = 1\n```\n<!-- runs-on: jax, torch -->\n```python\ny\n```\n"
    assert blocks(text) == [(3, None, "x = 1\n"), (7, {"jax", "torch"}, "y\n")]


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if blocks(p.read_text())],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_python_blocks_run(page, tmp_path):
    backend = keras.backend.backend()
    chosen = [
        # Blank lines first, so tracebacks give the page's own line numbers.
        (str(page.relative_to(ROOT)), "\n" * (line - 1) + code)
        for line, backends, code in blocks(page.read_text())
        if backends is None or backend in backends
    ]
    if not chosen:
        pytest.skip(f"no block of {page.name} is for the {backend} backend")
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(chosen),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
