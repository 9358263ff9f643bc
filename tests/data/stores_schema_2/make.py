"""The schema-2 stores of tests/test_store_compat.py, written by commit 1ea8003 (spikes as events with
absolute steps, `spike_events/step`; 5-ms counts compressed with zstd): `python make.py OUTDIR`."""
import sys
import jaxfne as jtfne
print(jtfne.__file__)
out = sys.argv[1]
cfg = (jtfne.Configuration().runtime(seed=3, duration_ms=40.0, dt_ms=0.1)
       .column(name="col", layers=["L2/3", "L4"], n=40).cell_types({"E": 0.8, "I": 0.2})
       .connectivity(p=0.5).probes(["SPK", "Vm", "LFP-proxy"], contacts=4, neurons=2, every_ms=0.5)
       .ensemble(seeds=[1, 2], sweep={"drive.current.E": [3.0, 5.0]}))
model = jtfne.construct(cfg)
jtfne.simulate(model, store=out + "/complete.zarr", chunk_ms=10.0, engine="xla")
# an unfinished store: the writer fails at the third chunk (as a kill would leave it)
import zarr
real = zarr.storage.LocalStore.set
async def failing(self, key, value):
    if key.startswith("Vm/c/") and key.split("/")[3] == "2":
        raise OSError(5, "I/O error (injected)")
    return await real(self, key, value)
zarr.storage.LocalStore.set = failing
try:
    jtfne.simulate(model, store=out + "/unfinished.zarr", chunk_ms=10.0, engine="xla")
    raise AssertionError("the injected write failure did not stop the run")
except jtfne.StoreError as e:
    print("unfinished:", str(e)[:80])
zarr.storage.LocalStore.set = real
assert zarr.open_group(out + "/complete.zarr", mode="r").attrs["jaxfne_schema_version"] == 2
assert jtfne.open_signals(out + "/complete.zarr")["SPK"].sizes["time"] == 400
assert jtfne.open_signals(out + "/unfinished.zarr", allow_incomplete=True)["SPK"].sizes["time"] == 200
