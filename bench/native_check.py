"""The native engine's throughput on 256 tutorial networks (200 ms, SPK, in memory), best of 3 runs.

    python bench/native_check.py                 # at any commit: PYTHONPATH=<extracted tree> python -P ...

bench/RESULTS.md section 10 used it to tell a host change from a code regression.
"""
import time, os
import jaxfne as jtfne
print(jtfne.__file__)
cfg = (jtfne.Configuration().runtime(seed=1, duration_ms=200.0, dt_ms=0.1).column(n=100)
       .cell_types({"E": 0.75, "I": 0.25}).connectivity().set_emitter(family="izhikevich", preset="cortical_eig")
       .probes(["SPK"]).ensemble(seeds=list(range(256))))
model = jtfne.construct(cfg)
jtfne.simulate(model, engine="native")
best = 1e9
for _ in range(3):
    t0 = time.perf_counter(); jtfne.simulate(model, engine="native"); best = min(best, time.perf_counter() - t0)
print(f"native 256: {best:.3f} s, {256*100*2000/best:.3g} neuron-steps/s")
