"""Search strategies over the unit cube: CMA-ES (Hansen's ``cma``), random and Latin-hypercube sampling.

Each strategy proposes a round of candidates as points of [0, 1]^P (the
parameters' bounds mapped linearly) and is told their losses. Every random
number comes from a NumPy Generator seeded by the calibration's
``search_seed`` (never NumPy's global state), so a strategy rebuilt from the
seed and told the same rounds proposes the same next round: that is how a
calibration resumes (the store holds the rounds, no pickled state).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

#: CMA-ES start: the middle of the box, step size 0.3 of its width (about the box in 2 sigma)
CMA_X0, CMA_SIGMA0 = 0.5, 0.3

#: what CMA-ES is told for a candidate whose loss is inf/NaN (it ranks last; CMA-ES only uses ranks)
CMA_FAILED_LOSS = 1e12


class RandomSearch:
    """Uniform samples of the unit cube, one independent stream per round (no learning)."""

    def __init__(self, n_params: int, candidates: int, search_seed: int):
        self.p, self.c, self.seed = n_params, candidates, search_seed
        self.round = 0

    def _rng(self):
        return np.random.default_rng([self.seed, self.round])

    def ask(self) -> np.ndarray:
        return self._rng().random((self.c, self.p))

    def tell(self, unit: np.ndarray, losses: np.ndarray) -> None:
        self.round += 1

    notes: tuple = ()


class LatinHypercube(RandomSearch):
    """A Latin hypercube per round: each parameter's range cut in ``candidates`` strata, one sample in each."""

    def ask(self) -> np.ndarray:
        rng = self._rng()
        strata = np.stack([rng.permutation(self.c) for _ in range(self.p)], axis=1)
        return (strata + rng.random((self.c, self.p))) / self.c


class CMAES:
    """Hansen's CMA-ES (the ``cma`` package) with ask/tell, bounded to the unit cube by its BoundTransform."""

    def __init__(self, n_params: int, candidates: int, search_seed: int):
        import cma                     # 1-2 s to import (scipy.stats): only when CMA-ES is used
        self._rng = np.random.default_rng(search_seed)
        opts = {"bounds": [0.0, 1.0], "popsize": candidates, "seed": np.nan, "verbose": -9,
                "randn": lambda lam, n: self._rng.standard_normal((lam, n)),
                "verb_filenameprefix": "", "verb_log": 0, "verb_disp": 0}
        self.notes = []
        with self._quiet():
            self.es = cma.CMAEvolutionStrategy([CMA_X0] * n_params, CMA_SIGMA0, opts)
        self._asked = None

    @contextlib.contextmanager
    def _quiet(self):
        """cma's own warnings (flat fitness, ...) are kept in ``notes``, not raised."""
        with warnings.catch_warnings(record=True) as log:
            warnings.simplefilter("always")
            yield
        self.notes.extend(str(w.message) for w in log)

    def ask(self) -> np.ndarray:
        with self._quiet():
            self._asked = self.es.ask()
        return np.array(self._asked, dtype=float)

    def tell(self, unit: np.ndarray, losses: np.ndarray) -> None:
        if self._asked is None or not np.array_equal(np.array(self._asked, dtype=float), unit):
            raise RuntimeError("CMAES.tell: told candidates that were not the last asked")
        f = np.where(np.isfinite(losses), losses, CMA_FAILED_LOSS)
        with self._quiet():
            self.es.tell(self._asked, [float(x) for x in f])
        self._asked = None


STRATEGIES = {"cmaes": CMAES, "random": RandomSearch, "lhs": LatinHypercube}


def strategy(method: str, n_params: int, candidates: int, search_seed: int):
    return STRATEGIES[method](n_params, candidates, search_seed)
