"""Field proxies: LFP and CSD across depth from per-neuron source currents.

These are proxies, not volume-conductor solutions (no PDE is solved, no
conductivity is assumed, amplitudes are arbitrary units):

- ``source`` of neuron i is its net synaptic current I_syn,i = s_exc,i - s_inh,i.
- LFP proxy at contact c (depth z_c): sum_i K(z_c - z_i) * source_i with the
  distance-weighted kernel K(dz) = r0 / sqrt(dz**2 + r0**2) (r0 = 50 um, the
  lateral offset of the virtual electrode); K is 1 at the source depth.
- CSD proxy: minus the second spatial derivative of the LFP proxy along depth,
  -(LFP[c-1] - 2 LFP[c] + LFP[c+1]) / h**2 with h the contact spacing in mm.
  Edges use the Vaknin convention: the first and last contacts are repeated
  once beyond the array, so the edge CSD is -(LFP[1] - LFP[0]) / h**2 (and
  likewise at the bottom).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

R0_UM = 50.0


def contact_depths_um(top_um: float, bottom_um: float, contacts: int) -> np.ndarray:
    """Contacts spread evenly from the top to the bottom of the column."""
    return np.linspace(top_um, bottom_um, contacts)


def distance_kernel(contact_z_um, depth_um, r0_um: float = R0_UM):
    """(C,) contact depths and (N,) neuron depths -> (C, N) weights r0 / sqrt(dz**2 + r0**2).

    The weight is 1 where a contact is at the neuron's depth and falls off as
    1/|dz| far away. Works on numpy and JAX arrays alike.
    """
    dz = contact_z_um[:, None] - depth_um[None, :]
    return r0_um / (dz * dz + r0_um * r0_um) ** 0.5


def lfp_proxy(source, kernel):
    """(..., T, N) sources and (..., C, N) kernel -> (..., T, C) LFP proxy."""
    return jnp.einsum("...tn,...cn->...tc", source, kernel)


def csd_proxy(lfp, spacing_um):
    """Minus the second difference of ``lfp`` along its last axis, Vaknin edges.

    ``spacing_um`` is one spacing, or a tuple of spacings, one per column: the
    last axis then holds that many equal blocks of contacts (column by
    column), each differenced on its own with its own edges.
    """
    if isinstance(spacing_um, tuple):
        k = lfp.shape[-1] // len(spacing_um)
        return jnp.concatenate([csd_proxy(lfp[..., c * k:(c + 1) * k], h) for c, h in enumerate(spacing_um)],
                               axis=-1)
    h_mm = spacing_um / 1000.0
    padded = jnp.concatenate([lfp[..., :1], lfp, lfp[..., -1:]], axis=-1)
    second = padded[..., :-2] - 2.0 * padded[..., 1:-1] + padded[..., 2:]
    return -second / (h_mm * h_mm)
