"""The model: a configuration turned into shapes (``Layout``) and arrays (``NetParams``), by ``construct``."""

from ._construct import (cell_assignment, construct, construct_ensemble, delay_classes, expand_members,
                         member_knobs, pathway_tables, probe_sampling, with_runtime)
from ._layout import Layout, precision
from ._model import Model
from ._network import Knobs, build_network, member_key
from ._params import NetParams, NetState, initial_state

__all__ = ["Knobs", "Layout", "Model", "NetParams", "NetState", "build_network", "cell_assignment", "construct",
           "construct_ensemble", "delay_classes", "expand_members", "initial_state", "member_key", "member_knobs",
           "pathway_tables", "precision", "probe_sampling", "with_runtime"]
