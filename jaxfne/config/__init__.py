"""Configuration: the vocabulary, the frozen sections, the sweep grammar and the fluent ``Configuration``.

The bottom layer of the package above the base modules: nothing here creates
arrays or imports the model, the engines, the sinks or the results.
"""

from ._configuration import Configuration
from ._presets import (FAMILIES, PARAMS, REGISTRY, V_PEAK_MV, emitter_rows, get_preset, preset_names, register_preset,
                       user_preset_names)
from ._specs import (CELL_TYPES, DEFAULT_COLUMN, DEFAULT_PATHWAYS, DTYPES, LAYER_DEPTHS_UM, LAYER_FRACTIONS,
                     MAX_STEPS, PATHWAYS, PROBES, check_pathways, layer_slots, parse_pathway_key,
                     synapse_flags, synapse_table)
from ._stimuli import STIMULUS_KINDS, StimulusSpec, check_stimuli
from ._sweep import REFUSED_PATHS, SWEEP_PATHS, sweep_function

__all__ = ["CELL_TYPES", "Configuration", "DEFAULT_COLUMN", "DEFAULT_PATHWAYS", "DTYPES", "FAMILIES",
           "LAYER_DEPTHS_UM", "LAYER_FRACTIONS", "MAX_STEPS", "PARAMS", "PATHWAYS", "PROBES", "REFUSED_PATHS",
           "REGISTRY", "STIMULUS_KINDS", "SWEEP_PATHS", "StimulusSpec", "check_pathways", "check_stimuli", "emitter_rows", "get_preset", "layer_slots", "parse_pathway_key",
           "preset_names", "register_preset", "sweep_function", "synapse_flags", "synapse_table", "user_preset_names", "V_PEAK_MV"]
