"""The XLA step's forms on one device, chunk calls only: where the time goes on a GPU.

For ensembles of the tutorial network (shared or per-member weights) it times
one compiled chunk (``_simulate.chunk_function``) in four forms: recurrent
input by the event loop or in fixed order without a loop (``ordered``), spike
rasters as booleans or packed to bits on the device (``packed``). Each form is
timed twice, device only (``block_until_ready``) and with the outputs copied to
the host, and its end state and spike count are compared bit for bit with the
event-loop form (the forms must agree exactly). The bandwidth floor takes the
state (v, u, two synaptic currents) read and written once per step plus one
bit per spike, over the device-to-device copy bandwidth measured here.

    python bench/gpu_variants.py --members 16 16384 65536 --chunk-steps 500 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STATE_BYTES_PER_NEURON_STEP = 4 * 4 * 2 + 1 / 8      # float32 v, u, s_exc, s_inh read and written; 1 bit out


def copy_bandwidth(device, n_bytes: int = 2**30) -> float:
    """Bytes read + written per second by a large elementwise pass on ``device``."""
    import jax
    import jax.numpy as jnp
    x = jax.device_put(jnp.arange(n_bytes // 4, dtype=jnp.float32), device)
    f = jax.jit(lambda a: a * 1.0001 + 1.0)
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n_bytes / best


def measure(members: int, shared: bool, chunk_steps: int, forms, device, calls: int) -> list:
    import jax
    import numpy as np

    from jaxfne.bench._suite import tutorial
    from jaxfne import construct
    from jaxfne.engine._mesh import _put
from jaxfne.engine import chunk_function, member_mesh, place_on_mesh
    from jax.sharding import PartitionSpec as P

    model = construct(tutorial(chunk_steps * 0.1 * (calls + 1), shared=shared).ensemble(seeds=list(range(members))))
    layout = model.layout
    mesh = member_mesh([device])
    params, state0 = place_on_mesh(model, mesh)
    t0 = _put(np.int32(0), mesh, P())
    rows, reference = [], None
    for ordered, packed in forms:
        fn = chunk_function(layout, chunk_steps, mesh, "xla", ordered_input=ordered, pack_spikes=packed)
        copy = lambda s: jax.tree_util.tree_map(lambda x: x.copy(), s)          # noqa: E731  (fn donates its state)
        t = time.perf_counter()
        state, out, _ = fn(copy(state0), params, t0)
        jax.block_until_ready((state, out))
        first = time.perf_counter() - t
        spk = np.asarray(out["SPK"])
        n_spikes = int(np.unpackbits(spk).sum()) if packed else int(spk.sum())
        end_v = np.asarray(state.v)
        if reference is None:
            reference = (n_spikes, end_v)
        same = n_spikes == reference[0] and np.array_equal(end_v, reference[1], equal_nan=True)
        device_s, host_s = [], []
        for _ in range(calls):
            t = time.perf_counter()
            s2, o2, _ = fn(copy(state0), params, t0)
            jax.block_until_ready((s2, o2))
            device_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            s2, o2, _ = fn(copy(state0), params, t0)
            jax.device_get(o2)
            host_s.append(time.perf_counter() - t)
            del s2, o2
        del state, out, spk
        ns = members * layout.n * chunk_steps
        best_dev, best_host = min(device_s), min(host_s)
        rows.append({"members": members, "shared": shared, "ordered_input": ordered, "packed_spikes": packed,
                     "neurons": layout.n, "chunk_steps": chunk_steps, "first_call_s": first, "device_s": best_dev, "with_host_s": best_host,
                     "neuron_steps_per_s_device": ns / best_dev, "neuron_steps_per_s_with_host": ns / best_host,
                     "us_per_step_device": 1e6 * best_dev / chunk_steps, "spikes": n_spikes,
                     "same_bits_as_event_loop": bool(same)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, nargs="+", default=[16, 1024, 16384])
    ap.add_argument("--unshared-members", type=int, nargs="*", default=[16384])
    ap.add_argument("--chunk-steps", type=int, default=500)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--forms", default="ff,tf,ft,tt", help="ordered/packed pairs: t or f each (default: all four)")
    ap.add_argument("--ordered-max-members", type=int, default=None,
                    help="skip the ordered forms above this many members (on an H200 they take ~5 ms per step "
                         "at 65536 members)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import jax
    device = jax.devices()[0]
    forms = [(f[0] == "t", f[1] == "t") for f in args.forms.split(",")]
    bw = copy_bandwidth(device)
    print(f"device {device} ({device.platform}); copy bandwidth {bw / 1e9:.0f} GB/s (read + write)", flush=True)
    head = (f"{'members':>8} {'W':>7} {'ordered':>7} {'packed':>6} {'first s':>8} {'us/step':>8} "
            f"{'nsps dev':>9} {'nsps host':>9} {'floor frac':>10} {'same bits':>9}")
    print(head, flush=True)
    rows = []
    todo = [(m, True) for m in args.members] + [(m, False) for m in args.unshared_members]
    for members, shared in todo:
        try:
            use = [f for f in forms if not (f[0] and args.ordered_max_members is not None
                                            and members > args.ordered_max_members)]
            part = measure(members, shared, args.chunk_steps, use, device, args.calls)
        except Exception as exc:  # noqa: BLE001  (a size that does not fit is reported, the rest still runs)
            print(f"{members:>8} {'shared' if shared else 'own':>7} failed: {type(exc).__name__}: {exc}"[:300], flush=True)
            rows.append({"members": members, "shared": shared, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        for r in part:
            floor_s = r["members"] * r["neurons"] * r["chunk_steps"] * STATE_BYTES_PER_NEURON_STEP / bw
            r["bandwidth_floor_fraction"] = floor_s / r["device_s"]
            rows.append(r)
            print(f"{r['members']:>8} {'shared' if shared else 'own':>7} {str(r['ordered_input']):>7} "
                  f"{str(r['packed_spikes']):>6} {r['first_call_s']:>8.2f} {r['us_per_step_device']:>8.1f} "
                  f"{r['neuron_steps_per_s_device']:>9.3g} {r['neuron_steps_per_s_with_host']:>9.3g} "
                  f"{r['bandwidth_floor_fraction']:>10.3g} {str(r['same_bits_as_event_loop']):>9}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "copy_bandwidth_Bps": bw, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
