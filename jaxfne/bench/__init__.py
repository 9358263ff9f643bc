"""The benchmark behind ``jaxfne bench`` and ``bench/run.py`` (not part of the simulator's core).

``_suite``: the cases, the table and the side-by-side runs; ``_baseline``:
the plain-JAX dense baseline measured beside jaxfne.
"""

from ._baseline import make_dense_baseline
from ._suite import scaling_table

__all__ = ["make_dense_baseline", "scaling_table"]
