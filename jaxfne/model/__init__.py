"""The model: a configuration turned into shapes (``Layout``) and arrays (``NetParams``), by ``construct``."""

from ._construct import (Members, cell_assignment, construct, construct_ensemble, delay_classes, expand_members,
                         make_layout, member_knobs, member_tables, pathway_tables, probe_sampling, with_runtime)
from ._layout import Layout, precision
from ._model import Model, param_axes
from ._network import Knobs, build_network, member_key
from ._params import NetParams, NetState, initial_state
from ._size import check_run

__all__ = ["Knobs", "Layout", "Members", "Model", "NetParams", "NetState", "build_network", "cell_assignment",
           "check_run", "construct", "construct_ensemble", "delay_classes", "expand_members", "initial_state",
           "make_layout", "member_key", "member_knobs", "member_tables", "param_axes", "pathway_tables", "precision",
           "probe_sampling", "with_runtime"]
