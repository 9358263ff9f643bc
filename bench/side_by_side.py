"""One run of the tutorial network ensemble, for timing two checkouts side by side.

    PYTHONPATH=OLD_CHECKOUT python bench/side_by_side.py memory|store [members] [engine]

Prints "<mode> <engine> <members> <seconds of simulate> <neuron-steps/s>" (the second of two
calls, so compilation and the kernel build are excluded). Used with farm-bench to compare a change
against the commit before it on the same machine (bench/RESULTS.md); works with any jaxfne
checkout that has the public API of the tutorial page.
"""

import shutil
import sys
import tempfile
import time

import jaxfne as jtfne

mode = sys.argv[1] if len(sys.argv) > 1 else "memory"
members = int(sys.argv[2]) if len(sys.argv) > 2 else 256
engine = sys.argv[3] if len(sys.argv) > 3 else "auto"
cfg = (jtfne.Configuration().runtime(seed=42, duration_ms=1000.0, dt_ms=0.1)
       .column(name="L2/3_column", layers=["L2/3"], n=100).cell_types({"E": 0.75, "I": 0.25})
       .connectivity().set_emitter(family="izhikevich", preset="cortical_eig")
       .probes(["SPK", "Vm"], neurons=5).ensemble(seeds=list(range(members))))
model = jtfne.construct(cfg)
best = None
for _ in range(2):
    tmp = tempfile.mkdtemp()
    t = time.perf_counter()
    if mode == "store":
        jtfne.simulate(model, store=f"{tmp}/run.zarr", chunk_ms=50.0, engine=engine)
    else:
        jtfne.simulate(model, chunk_ms=50.0, engine=engine)
    dt = time.perf_counter() - t
    shutil.rmtree(tmp)
    best = dt
print(mode, engine, members, f"{best:.3f}", f"{members * 100 * 10000 / best:.3e}")
