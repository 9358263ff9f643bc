"""Published firing statistics by layer and cell type, each row with its source (docs/calibration.md).

Only numbers checked against a source are here; the source of each row is
written beside it. What could not be verified is left out and said so in
docs/calibration.md ("Targets from real data").
"""

from __future__ import annotations

import dataclasses

from .._errors import ConfigurationError


@dataclasses.dataclass(frozen=True)
class Row:
    layer: str
    cell_type: str
    statistic: str
    value: float
    units: str
    source: str


_PD14_SIM = ("Potjans & Diesmann (2014) Cereb Cortex 24(3):785-806, doi:10.1093/cercor/bhs358: the full-scale "
             "microcircuit's spontaneous mean population rate, as simulated and tabulated by the model's home "
             "institute in INM-6/nnmt (example script plotting the microcircuit's firing rates, "
             "'simulated_rates', order L2/3e L2/3i L4e L4i L5e L5i L6e L6i)")

#: the model's layer/type rates; PD14 reports them as in agreement with in vivo rates in awake animals,
#: including the low rate of L2/3 excitatory cells (its abstract, PMC3920768)
TABLE = (
    Row("L2/3", "E", "spike_rate_hz", 0.751, "Hz", _PD14_SIM),
    Row("L2/3", "I", "spike_rate_hz", 2.971, "Hz", _PD14_SIM),
    Row("L4", "E", "spike_rate_hz", 4.29, "Hz", _PD14_SIM),
    Row("L4", "I", "spike_rate_hz", 6.94, "Hz", _PD14_SIM),
    Row("L5", "E", "spike_rate_hz", 6.816, "Hz", _PD14_SIM),
    Row("L5", "I", "spike_rate_hz", 7.698, "Hz", _PD14_SIM),
    Row("L6", "E", "spike_rate_hz", 1.126, "Hz", _PD14_SIM),
    Row("L6", "I", "spike_rate_hz", 8.102, "Hz", _PD14_SIM),
)

#: PD14's population sizes (full scale), for the E fraction of a layer; checked against two transcriptions of the
#: paper's parameter table: one quoting PMC3920768 (SpikingNeuralNetworks.jl examples, all eight) and the
#: microcircuit example's network parameters in NEST (L5 and L6)
PD14_POPULATION_SIZES = {"L2/3": {"E": 20683, "I": 5834}, "L4": {"E": 21915, "I": 5479},
                         "L5": {"E": 4850, "I": 1065}, "L6": {"E": 14395, "I": 2948}}


def pd14_fractions(layers) -> dict:
    """Per-layer E/I fractions of PD14's population sizes, for ``Configuration.cell_types``."""
    out = {}
    for lay in layers:
        if lay not in PD14_POPULATION_SIZES:
            raise ConfigurationError(f"pd14_fractions: layer {lay!r} is not in Potjans & Diesmann (2014); "
                                     f"its layers are {', '.join(PD14_POPULATION_SIZES)}")
        e, i = PD14_POPULATION_SIZES[lay]["E"], PD14_POPULATION_SIZES[lay]["I"]
        out[lay] = {"E": e / (e + i), "I": i / (e + i)}
    return out


def table_targets(layers, *, rel_sd=0.25, statistic="spike_rate_hz", cell_types=("E", "I")) -> dict:
    """Targets for ``calibrate`` from :data:`TABLE`: {"spike_rate_hz.L4.E": (value, rel_sd * value), ...}.

    ``rel_sd`` is a tolerance you choose (the table gives means only): 0.25
    asks for each rate within about a quarter of its value.
    """
    if not rel_sd > 0:
        raise ConfigurationError(f"table_targets: rel_sd={rel_sd!r} is invalid; it must be > 0")
    rows = [r for r in TABLE if r.layer in layers and r.statistic == statistic and r.cell_type in cell_types]
    missing = [lay for lay in layers if not any(r.layer == lay for r in rows)]
    if missing:
        raise ConfigurationError(f"table_targets: the table has no {statistic} for layer(s) {', '.join(missing)}; "
                                 f"it has {', '.join(sorted({r.layer for r in TABLE}))}")
    return {f"{r.statistic}.{r.layer}.{r.cell_type}": (r.value, rel_sd * r.value) for r in rows}
