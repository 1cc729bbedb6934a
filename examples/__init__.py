"""Runnable examples of keras-gc; run each from the repository root, e.g.
`python -m examples.horse_or_human --help`."""
