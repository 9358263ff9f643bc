"""The layout: everything that fixes a shape, static and shared by all members of a run."""

from __future__ import annotations

import contextlib
import dataclasses

import jax

from .._errors import ConfigurationError
from .._probes import REGISTRY

def precision(dtype: str):
    """Context in which ``dtype`` really is available (float64 needs x64)."""
    if dtype == "float64":
        enable = getattr(jax, "enable_x64", None)
        if enable is None:  # pragma: no cover - very old or very new JAX
            if not jax.config.jax_enable_x64:
                raise ConfigurationError(
                    "runtime: dtype='float64' needs 64-bit JAX; set JAX_ENABLE_X64=1 before starting Python")
            return contextlib.nullcontext()
        return enable(True)
    return contextlib.nullcontext()

@dataclasses.dataclass(frozen=True)
class Layout:
    """Everything that fixes a shape: static, shared by all members."""

    n: int
    #: layer of each layer slot (every layer of every column, in neuron order)
    layers: tuple
    n_per_layer: tuple
    #: all contacts of all columns (``contacts_per_column`` per column, column by column)
    contacts: int
    contact_z_um: tuple
    probes: tuple
    dtype: str
    n_steps: int
    dt_ms: float
    shared_weights: bool = False
    #: the weights are the user's own matrix (connectivity(weights=...)): made once, shared by every member
    user_weights: bool = False
    #: delay of each delay class in steps (ascending); (1,) when every pathway acts next step
    delay_steps: tuple = (1,)

    #: global indices of the neurons Vm and source record (None: all)
    sample_neurons: tuple | None = None
    #: Vm, source and the field proxies are sampled every this many steps
    sample_every: int = 1
    #: column names, and the column (index) of each layer slot
    columns: tuple = ("column",)
    slot_column: tuple = (0,)
    #: the number of stimuli (the S of model/_params.py; their values are arrays, so sweeps keep the program)
    n_stimuli: int = 0
    #: rows of the array-driven stimuli's table (the R of model/_params.py ``stim_table``; 0 without them)
    stim_table_rows: int = 0
    #: the table has a member axis (an array stimulus with per_member=True); otherwise one copy is shared
    stim_table_per_member: bool = False
    #: the integration scheme (config INTEGRATORS): "euler" or "izhikevich2003"
    integrator: str = "euler"
    #: the noise is drawn once per this many steps and held (1: every step)
    noise_hold_steps: int = 1
    #: the most onsets a ``trials`` stimulus lists (the O of model/_params.py ``stim_onsets``; 0 without)
    trial_onsets: int = 0
    #: some Poisson stimulus has a rate profile (inhomogeneous)
    poisson_profiles: bool = False
    #: conductance synapses (True) or current synapses, per pathway ((E->E, E->I), (I->E, I->I)): [pre][post type]
    conductance: tuple = ((False, False), (False, False))

    def geometry(self, probe: str) -> dict:
        """Shape and dims of a probe's recording: time axis, its stride, last axis (from its definition)."""
        p = REGISTRY[probe]
        stride = self.sample_every if p.sampled else 1
        if p.is_field:
            last_dim, n_last = "contact", self.contacts
        elif p.sampled and self.sample_neurons is not None:
            last_dim, n_last = "neuron_sampled", len(self.sample_neurons)
        else:
            last_dim, n_last = "neuron", self.n
        return {"time_dim": "time" if stride == 1 else "time_sampled", "stride": stride,
                "n_time": -(-self.n_steps // stride), "last_dim": last_dim, "n_last": n_last}

    def step_bytes(self, probe: str) -> float:
        """Bytes one member's recording of ``probe`` takes per simulated step (bool: one byte a value)."""
        geo = self.geometry(probe)
        item = 1 if REGISTRY[probe].dtype == "bool" else (8 if self.dtype == "float64" else 4)
        return item * geo["n_last"] / geo["stride"]

    @property
    def delay_slots(self) -> int:
        """Ring-buffer slots of delayed input (0 when nothing is delayed beyond one step)."""
        return 0 if self.delay_steps == (1,) else max(self.delay_steps)

    @property
    def contacts_per_column(self) -> int:
        return self.contacts // len(self.columns)

    @property
    def contact_spacing_um(self):
        """The contact spacing: a float for one column, a tuple (one per column) for several.

        ``csd_proxy`` takes either: with a tuple it splits the contacts into
        that many equal blocks, one column each.
        """
        k = self.contacts_per_column
        spacings = tuple((z[-1] - z[0]) / (k - 1) for z in
                         (self.contact_z_um[c * k:(c + 1) * k] for c in range(len(self.columns))))
        return spacings[0] if len(spacings) == 1 else spacings
