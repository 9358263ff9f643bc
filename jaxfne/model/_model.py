"""A constructed model: data only (what ``construct`` returns, what the engines and sinks read)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import Configuration
from ._layout import Layout
from ._params import NetParams

@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A constructed model: the configuration, its static layout and its arrays.

    ``params`` holds every per-member array with a leading member axis;
    ``neuron_coords`` the per-neuron labels (cell type, layer, depth) and
    ``member_coords`` the per-member labels (seed and swept values).
    ``r`` (members, N): each neuron's heterogeneity draw r ~ U(0, 1), from
    which the parameters given as polynomials in r (the ``cortical_eig``
    preset, ``set_emitter(heterogeneity=...)``) were computed.
    """

    config: Configuration
    layout: Layout
    params: NetParams
    neuron_coords: dict
    member_coords: dict
    ensemble: bool = False
    r: np.ndarray | None = None

    @property
    def n_members(self) -> int:
        return int(self.params.a.shape[0])

    def member_params(self, member: int) -> NetParams:
        """The arrays of one member (what ``step`` is written for): shared arrays as they are."""
        return NetParams(*[x if ax is None else x[member] for x, ax in zip(self.params, param_axes(self.layout))])


def param_axes(layout: Layout) -> NetParams:
    """The member axis of each array of NetParams (for vmap): 0, or None for the arrays every member shares
    (the weights when shared, the array stimuli's table unless some array stimulus is per member)."""
    return NetParams(*[0] * len(NetParams._fields))._replace(w=None if layout.shared_weights else 0,
                                                              stim_table=0 if layout.stim_table_per_member
                                                              else None)
