"""A fair, repeated A/B comparison of an optimizer with and without GC.

`compare` trains the same model twice per seed, once with the bare optimizer
and once with it wrapped by `keras_gc.wrap`, and nothing else differs: both
runs start from the same initial weights, see the same batches in the same
order and draw the same augmentation and dropout. Repeating the pair over
several seeds gives each metric's mean and spread and the paired difference
(GC minus bare), which tells a real effect from seed-to-seed noise.

Its modules, each importing only the ones after it and the core's public
names: `run` (the training), `report` (`Comparison`, `Run`: summary, table,
JSON), `stats` (paired t-intervals and verdicts), `plot` (matplotlib curves).
"""

from keras_gc.comparison.report import ARMS, Comparison, Run
from keras_gc.comparison.run import compare

__all__ = ["ARMS", "Comparison", "Run", "compare"]
