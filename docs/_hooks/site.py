"""MkDocs hooks: math rendered to MathML at build time, so pages need no script
and no network; the constructors of `keras_gc.optimizers` listed from the
installed Keras, since the module makes them on first use (static analysis
cannot see them)."""

import html
import os
import re

from latex2mathml.converter import convert

# What pymdownx.arithmatex (generic mode) leaves for a script to typeset.
_BLOCK = re.compile(r'<div class="arithmatex">\s*\\\[(.*?)\\\]\s*</div>', re.DOTALL)
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.DOTALL)
_CONSTRUCTORS = "<!-- keras_gc.optimizers: constructors -->"


def _mathml(tex: str, display: str) -> str:
    return convert(html.unescape(tex).strip(), display=display)


def on_page_content(content: str, **_: object) -> str:
    content = _BLOCK.sub(lambda m: _mathml(m.group(1), "block"), content)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), content)


def on_page_markdown(markdown: str, **_: object) -> str:
    if _CONSTRUCTORS not in markdown:
        return markdown
    return markdown.replace(_CONSTRUCTORS, _constructors_table())


def _constructors_table() -> str:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    import keras_gc

    rows = [
        "| `keras_gc.optimizers.` | wraps, and what it computes (Keras' own summary) |",
        "|---|---|",
    ]
    for name in keras_gc.optimizers.__all__:
        summary = (getattr(keras.optimizers, name).__doc__ or "").strip()
        first = summary.split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
        rows.append(
            f'| <span id="keras_gc.optimizers.{name}"></span>`{name}` '
            f"| `keras.optimizers.{name}`: {first} |"
        )
    return "\n".join(rows) + f"\n\nKeras {keras.__version__} offers these.\n"
