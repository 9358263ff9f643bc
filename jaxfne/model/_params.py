"""The arrays of one network: its parameters and its state, declared once.

Written for one network (a leading member axis is added when batched).
``build_network`` (model/_network.py) makes the parameters, ``initial_state``
the state at t = 0; the engines read both.

``PARAM_FIELDS`` and ``STATE_FIELDS`` are the one declaration of every array:
its name, dtype kind, per-member shape, meaning, whether the native kernel
reads it and, for the per-neuron arrays the kernel pads to its vector width,
the value of its padding lanes. ``NetParams`` and ``NetState`` are made from
them (same names, same order: stores hold checkpoint fields by name), and the
native engine builds its call from them and checks the compiled kernel
against them when it loads it (jaxfne/engine/_native.py). The model constants
shared by the engines live here too.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

#: the spike threshold: a step whose new v reaches it is a spike, shown at this value in Vm (declared in
#: config/_presets.py, which keeps every reset c below it)
from ..config import V_PEAK_MV

#: the membrane potential of every neuron at t = 0 (u starts at b * v)
V_INIT_MV = -65.0

#: dtype kinds of the declared arrays: "float" is the run's dtype (float32 or float64)
KINDS = ("float", "bool", "uint32")


@dataclasses.dataclass(frozen=True)
class Field:
    """One array of NetParams or NetState.

    ``shape``: per member, in symbols: N neurons, D delay slots (0 without
    delays), C delay classes, P field contacts, S stimuli; () a scalar. ``native``: the
    native kernel reads it. ``pad``: the value the native kernel gives the
    padding lanes of this per-neuron array (the neuron axis is padded to the
    kernel's vector width); None for arrays that are not padded.
    """

    name: str
    kind: str
    shape: str
    description: str
    native: bool = True
    pad: float | None = None


PARAM_FIELDS = (
    Field("a", "float", "(N,)", "Izhikevich a: time scale of the recovery variable u", pad=0.0),
    Field("b", "float", "(N,)", "Izhikevich b: sensitivity of u to v", pad=0.0),
    Field("c", "float", "(N,)", "Izhikevich c: v after a spike (mV)", pad=-70.0),
    Field("d", "float", "(N,)", "Izhikevich d: increment of u at a spike", pad=0.0),
    Field("is_exc", "bool", "(N,)", "True for excitatory cells (their outgoing weights add to s_exc)"),
    Field("w", "float", "(N+1, N) | (C, N+1, N)",
          "weights [pre, post] >= 0, sign from the pre type, last row 0; one matrix per delay class when "
          "delays differ; no member axis when shared"),
    Field("i_mean", "float", "(N,)", "constant drive current", pad=0.0),
    Field("noise_scale", "float", "(N,)", "sigma / sqrt(dt): std of the current noise per step", pad=0.0),
    Field("decay_exc", "float", "(N,)", "exp(-dt / tau_exc), or 0 where the E pathway to that neuron's type "
          "is a delta synapse: per-step decay of s_exc", pad=0.0),
    Field("decay_inh", "float", "(N,)", "exp(-dt / tau_inh), or 0 where the I pathway to that neuron's type "
          "is a delta synapse: per-step decay of s_inh", pad=0.0),
    Field("dt_ms", "float", "()", "time step (ms)"),
    Field("noise_key", "uint32", "(2,)", "raw key of the member's counter-based noise stream"),
    Field("lfp_kernel", "float", "(P, N)", "contact-by-neuron weights of the LFP proxy", native=False),
    Field("active", "bool", "()", "False for padding members (they never emit spikes)"),
    # stimuli (model/_stimuli.py): S of them, sorted by name; S = 0 without stimuli
    Field("stim_target", "float", "(S, N)", "1 on the targets of stimulus s, 0 elsewhere (1 / dt on the targets "
          "of a Poisson source whose pathway to them is a delta synapse)"),
    Field("stim_steps", "uint32", "(S, 7)",
          "stimulus s in steps: onset, active span, period, on-width (2^32 - 1: unbounded), Poisson draw "
          "threshold (array: steps per row), Poisson sources (array: its first row of stim_table), "
          "random-stream tag"),
    Field("stim_wave", "float", "(S, 5)",
          "waveform of stimulus s: amplitude (Poisson: weight), offset, omega (rad per step), phase, kind code "
          "(0 current, 1 sine, 2 Poisson E, 3 Poisson I, 4 array)"),
    Field("stim_key", "uint32", "(2,)", "raw key of the member's Poisson spike-source stream"),
    Field("stim_table", "float", "(R, N)",
          "rows of the array-driven stimuli, each stimulus's rows in turn (one value per neuron); no member "
          "axis (shared by every member) unless an array stimulus has per_member=True"),
    Field("rev_exc", "float", "()", "reversal potential (mV) of excitatory conductance synapses"),
    Field("rev_inh", "float", "()", "reversal potential (mV) of inhibitory conductance synapses"),
    Field("stim_onsets", "uint32", "(S, O)", "onsets (steps) of each trials stimulus, 2^32 - 1 after its last "
          "(and for every other stimulus)"),
)

STATE_FIELDS = (
    Field("v", "float", "(N,)", "membrane potential (mV)", pad=-70.0),
    Field("u", "float", "(N,)", "recovery (adaptation) variable", pad=-14.0),
    Field("s_exc", "float", "(N,)", "excitatory synaptic current", pad=0.0),
    Field("s_inh", "float", "(N,)", "inhibitory synaptic current (enters with a minus sign)", pad=0.0),
    Field("pend_exc", "float", "(D, N)", "delayed excitatory input waiting to arrive (ring buffer)"),
    Field("pend_inh", "float", "(D, N)", "delayed inhibitory input waiting to arrive"),
)


def _doc(summary: str, fields) -> str:
    rows = "\n".join(f"    {f.name}: {f.kind} {f.shape}{'' if f.native else ' (not read by the native kernel)'}"
                     f" -- {f.description}" for f in fields)
    return f"{summary}\n\nFields (declared in jaxfne/model/_params.py):\n\n{rows}\n"


NetParams = NamedTuple("NetParams", [(f.name, jax.Array) for f in PARAM_FIELDS])
NetParams.__doc__ = _doc("Arrays of one network (leading member axis once batched).", PARAM_FIELDS)
NetState = NamedTuple("NetState", [(f.name, jax.Array) for f in STATE_FIELDS])
NetState.__doc__ = _doc("The state of one network (leading member axis once batched).", STATE_FIELDS)


def padding_lane() -> dict:
    """{field name: value} of the native kernel's padding lanes (per-neuron arrays; state first, as the call)."""
    return {f.name: f.pad for f in STATE_FIELDS + PARAM_FIELDS if f.pad is not None}


def _check_declaration() -> None:
    """The declaration is consistent; run at import, so a mistake fails ``import jaxfne``."""
    for cls, fields in ((NetParams, PARAM_FIELDS), (NetState, STATE_FIELDS)):
        names = tuple(f.name for f in fields)
        if cls._fields != names:
            raise ImportError(f"jaxfne: {cls.__name__} has fields {cls._fields}, its declaration {names}")
        for f in fields:
            if f.kind not in KINDS:
                raise ImportError(f"jaxfne: {cls.__name__}.{f.name} has kind {f.kind!r}; choose from {KINDS}")
            if f.pad is not None and (f.shape != "(N,)" or f.kind != "float" or not f.native):
                raise ImportError(f"jaxfne: {cls.__name__}.{f.name} has a padding value but is not a per-neuron "
                                  "float array the native kernel reads")
    clash = {f.name for f in PARAM_FIELDS} & {f.name for f in STATE_FIELDS}
    if clash:
        raise ImportError(f"jaxfne: {sorted(clash)} are declared both as parameters and as state")
    if not all(f.native for f in STATE_FIELDS):
        raise ImportError("jaxfne: the native kernel carries the whole state; every state field must be native")
    missing = [f.name for f in PARAM_FIELDS + STATE_FIELDS if f.shape == "(N,)" and f.kind == "float"
               and f.native and f.pad is None]
    if missing:
        raise ImportError(f"jaxfne: per-neuron arrays {missing} need a padding value for the native kernel")
    # the padding lanes must rest: a fixed point of the step (no drive, no noise, no input) below the peak
    p = padding_lane()
    v, u = p["v"], p["u"]
    dv = 0.04 * v * v + 5.0 * v + 140.0 - u + p["i_mean"] + (p["s_exc"] - p["s_inh"])
    du = p["a"] * (p["b"] * v - u)
    if abs(dv) > 1e-9 or abs(du) > 1e-9 or not (v < V_PEAK_MV and p["c"] < V_PEAK_MV) or p["noise_scale"] != 0.0:
        raise ImportError(f"jaxfne: the padding lane {p} is not at rest below {V_PEAK_MV} mV (dv={dv}, du={du})")


_check_declaration()


def initial_state(params: NetParams, delay_slots: int = 0) -> NetState:
    v = jnp.full_like(params.a, V_INIT_MV)
    pend = jnp.zeros((delay_slots,) + v.shape, v.dtype)
    return NetState(v=v, u=params.b * v, s_exc=jnp.zeros_like(v), s_inh=jnp.zeros_like(v),
                    pend_exc=pend, pend_inh=pend)
