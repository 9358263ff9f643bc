"""Damaged stores are detected: every chunk carries a CRC-32C and every chunk is written, so a chunk file
that is deleted, truncated, bit-flipped or emptied is reported by ``verify_store`` / ``jaxfne verify``
(array, chunk, file) and reading it raises a StoreError naming the chunk, never zeros or wrong values.

Small stores (4 members x 20 neurons, 20 ms in 5-ms chunks) so the file runs in seconds.
"""

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr

import jaxfne as jtfne
from jaxfne import cli
from jaxfne.sinks import _store, _verify

DATA = Path(__file__).parent / "data" / "stores_before_layers"
CHUNK_MS = 5.0
DAMAGES = ("delete", "truncate", "flip", "empty")


def model():
    return jtfne.construct(jtfne.Configuration().runtime(duration_ms=20.0, dt_ms=0.1, seed=1)
                           .column(layers=["L2/3", "L4"], n=20)
                           .probes(["SPK", "Vm", "LFP-proxy"], contacts=4).ensemble(seeds=[1, 2, 3, 4]))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A complete store, the same run sharded (inner chunks of 2 members in shards of 4), its in-memory
    Signals, and an unfinished store (the writer failed at chunk 2: two chunks and two checkpoints done)."""
    d = tmp_path_factory.mktemp("integrity")
    m = model()
    jtfne.simulate(m, store=d / "run.zarr", chunk_ms=CHUNK_MS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_store, "INNER_MEMBERS", 2)
        jtfne.simulate(m, store=d / "sharded.zarr", chunk_ms=CHUNK_MS)
    with pytest.MonkeyPatch.context() as mp:
        real = zarr.storage.LocalStore.set

        async def failing(self, key, value):
            if key == "spike_events/count/c/0/2":
                raise OSError(errno.EIO, "I/O error (injected)")
            return await real(self, key, value)
        mp.setattr(zarr.storage.LocalStore, "set", failing)
        with pytest.raises(jtfne.StoreError, match="writing chunk 2"):
            jtfne.simulate(m, store=d / "unfinished.zarr", chunk_ms=CHUNK_MS)
    return {"run": d / "run.zarr", "sharded": d / "sharded.zarr", "unfinished": d / "unfinished.zarr",
            "model": m, "memory": jtfne.simulate(m, chunk_ms=CHUNK_MS)}


def damage(file: Path, how: str) -> None:
    data = file.read_bytes()
    if how == "delete":
        file.unlink()
    elif how == "truncate":
        file.write_bytes(data[:len(data) // 2])
    elif how == "flip":
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x04            # one bit, in the middle of the chunk
        file.write_bytes(bytes(flipped))
    else:
        file.write_bytes(b"")


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def named(name: str, chunk: tuple, file: Path) -> str:
    """The regex a StoreError about that chunk must match: array, chunk index and file."""
    return re.escape(f"array '{name}', chunk {chunk} is damaged (file '{file}'")


def assert_reported(report, name: str, chunk: tuple, file: Path) -> None:
    assert not report.intact
    assert [(d.array, d.chunk, d.file) for d in report.damaged] == [(name, chunk, str(file))], str(report)


def test_a_new_store_is_checksummed_and_writes_every_chunk(stores):
    root = zarr.open_group(stores["run"], mode="r")
    assert root.attrs["integrity"] == {"checksum": "crc32c", "every_chunk_written": True}
    assert root.attrs["jaxfne_schema_version"] == 3                    # spikes as events, steps as differences
    for name in ["spike_events/neuron", "spike_events/step_delta", "spike_events/count", "spike_count", "time_bin",
                 "Vm", "LFP-proxy", "seed", "member", "time", "layer", "cell_type", "state_finite",
                 "checkpoint/state", "checkpoint/completed_steps"]:
        assert type(root[name].compressors[-1]).__name__ == "Crc32cCodec", name
    sharded = zarr.open_group(stores["sharded"], mode="r")["spike_count"]
    assert sharded.shards == (4, 1, 20) and sharded.chunks == (2, 1, 20)   # one 5-ms bin per 5-ms chunk
    codec = sharded.metadata.codecs[0]                                 # inside the shard: chunks and index
    assert [type(c).__name__ for c in codec.codecs][-1] == "Crc32cCodec"
    assert [type(c).__name__ for c in codec.index_codecs][-1] == "Crc32cCodec"
    path = copy(stores["run"], stores["run"].parent / "copy.zarr")
    metadata = (path / "zarr.json").read_bytes()
    report = jtfne.verify_store(path)
    # 2 probes, spike_count and spike_events/count x 4 time chunks; an object of events and one of steps
    # per chunk with spikes (chunk 0 has none: no object); one chunk per coordinate and state_finite,
    # 2 checkpoint slots, 2 markers
    spiking = int((np.asarray(stores["memory"]["SPK"]).reshape(4, 4, 50, 20).sum(axis=(0, 2, 3)) > 0).sum())
    assert spiking == 3
    n_coords = report.arrays_checked - 6 - 1 - 2
    assert report.intact and report.checksums and \
        report.chunks_checked == 4 * 4 + 2 * spiking + n_coords + 1 + 2 + 2
    assert (path / _verify.RECORD).is_file() and (path / "zarr.json").read_bytes() == metadata
    xr.testing.assert_identical(jtfne.open_signals(path).dataset.load(), stores["memory"].dataset)


def test_an_all_fill_coordinate_chunk_is_written_and_read(tmp_path):
    one = jtfne.construct(jtfne.Configuration().runtime(duration_ms=10.0, dt_ms=0.1, seed=0).column(n=10))
    path = tmp_path / "one.zarr"
    jtfne.simulate(one, store=path, chunk_ms=CHUNK_MS)
    assert (path / "member" / "c" / "0").is_file() and (path / "seed" / "c" / "0").is_file()   # [0]: all fill
    assert jtfne.verify_store(path).intact
    (path / "seed" / "c" / "0").unlink()
    with pytest.raises(jtfne.StoreError, match=named("seed", (0,), path / "seed" / "c" / "0")):
        jtfne.open_signals(path)


# (store, array, chunk file index, how the test reads it): a probe of each kind, a coordinate, an index
# coordinate, state_finite; and the probes of a sharded store (a file is a shard of inner chunks)
# spikes (schema 2): the events, read through the raster rebuilt from them, and the counts, read by the
# rates (analysis reads counts, not events, when their bins fit)
KINDS = [("run", "spike_events/neuron", (0, 1, 0), "raster"), ("run", "spike_events/step_delta", (0, 3, 0), "raster"),
         ("run", "spike_events/count", (0, 2), "raster"), ("run", "spike_count", (0, 1, 0), "rate"),
         ("run", "Vm", (0, 2, 0), "mean"), ("run", "LFP-proxy", (0, 3, 0), "mean"),
         ("run", "seed", (0,), "open"), ("run", "time", (0,), "open"), ("run", "state_finite", (0,), "open"),
         ("sharded", "spike_events/neuron", (0, 1, 0), "raster"), ("sharded", "spike_count", (0, 2, 0), "rate"),
         ("sharded", "Vm", (0, 2, 0), "mean")]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("layout, name, chunk, read", KINDS, ids=[f"{k[0]}-{k[1]}" for k in KINDS])
def test_damaged_chunk_is_reported_and_never_read_as_data(stores, tmp_path, layout, name, chunk, read, how):
    path = copy(stores[layout], tmp_path / "run.zarr")
    file = path / name / "c" / "/".join(map(str, chunk))
    damage(file, how)
    assert_reported(jtfne.verify_store(path), name, chunk, file)
    with pytest.raises(jtfne.StoreError, match=named(name, chunk, file)):
        signals = jtfne.open_signals(path)                 # coordinates are read here
        assert read != "open", "opening read the damaged coordinate without an error"
        if read == "rate":
            jtfne.analysis.firing_rate(signals).compute()  # Dask worker threads: the StoreError surfaces
        elif read == "raster":
            int(signals["SPK"].sum().compute())
        else:
            signals[name].mean().compute()


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_checkpoint_is_reported_and_never_resumed_from(stores, tmp_path, how):
    path = copy(stores["unfinished"], tmp_path / "unfinished.zarr")
    assert _store.Store(path, mode="r").completed_all() == 100       # chunks 0 and 1: slots 0 and 1
    assert jtfne.verify_store(path).intact
    file = path / "checkpoint" / "state" / "c" / "1" / "0" / "0"      # slot 1: the state after chunk 1
    damage(file, how)
    assert_reported(jtfne.verify_store(path), "checkpoint/state", (1, 0, 0), file)
    # the completed data still reads; resuming from the damaged state is refused, naming the chunk
    assert jtfne.open_signals(path, allow_incomplete=True)["SPK"].sizes["time"] == 100
    with pytest.raises(jtfne.StoreError, match=named("checkpoint/state", (1, 0, 0), file)):
        jtfne.simulate(stores["model"], store=path, chunk_ms=CHUNK_MS)


def test_an_unfinished_store_verifies_its_completed_part_and_resumes(stores, tmp_path):
    path = copy(stores["unfinished"], tmp_path / "unfinished.zarr")
    report = jtfne.verify_store(path)
    assert report.intact and report.completed_steps == 100 and report.n_steps == 200
    assert not (path / "state_finite" / "c" / "0").exists()          # written with the last chunk only
    resumed = jtfne.simulate(stores["model"], store=path, chunk_ms=CHUNK_MS)
    xr.testing.assert_identical(resumed.dataset.load(), stores["memory"].dataset)
    assert jtfne.verify_store(path).intact


def test_a_missing_inner_chunk_of_a_shard_is_reported(stores, tmp_path):
    """A shard whose (checksummed) index lists an inner chunk as absent: zarr would read fill values."""
    path = copy(stores["sharded"], tmp_path / "run.zarr")
    file = path / "Vm" / "c" / "0" / "1" / "0"
    raw = bytearray(file.read_bytes())
    n = 16 * 2 + 4                                                    # 2 inner chunks: offsets, lengths, crc
    index = np.frombuffer(bytes(raw[-n:-4]), dtype="<u8").copy().reshape(2, 1, 1, 2)
    index[1] = 2**64 - 1                                              # inner chunk (1, 0, 0): "not written"
    body = index.tobytes()
    raw[-n:] = bytes(numcodecs.CRC32C().encode(body))
    file.write_bytes(bytes(raw))
    report = jtfne.verify_store(path)
    assert [(d.array, d.chunk) for d in report.damaged] == [("Vm", (0, 1, 0))]
    assert "inner chunk(s) [(1, 0, 0)] missing" in report.damaged[0].reason


def test_a_wrong_member_coordinate_is_caught_by_the_members_digest(stores, tmp_path):
    """Values that decode and pass a checksum but are not the run's members (rewritten by a tool)."""
    path = copy(stores["run"], tmp_path / "run.zarr")
    zarr.open_group(path, mode="r+")["seed"][...] = np.array([1, 2, 3, 5])
    report = jtfne.verify_store(path)
    assert [(d.array, d.chunk) for d in report.damaged] == [("seed", None)]
    with pytest.raises(jtfne.StoreError, match="coordinate 'seed' is damaged .*members_digest"):
        jtfne.open_signals(path)


def test_stores_written_before_checksums_open_resume_and_verify(tmp_path):
    """Schema-1 stores without crc32c: what can be verified is that every chunk is there and decodes."""
    complete = copy(DATA / "complete.zarr", tmp_path / "complete.zarr")
    report = jtfne.verify_store(complete)
    assert report.intact and not report.checksums and report.chunks_checked > 20
    unfinished = copy(DATA / "unfinished.zarr", tmp_path / "unfinished.zarr")
    assert jtfne.verify_store(unfinished).intact
    file = complete / "SPK" / "c" / "0" / "1" / "0"
    file.unlink()
    assert_reported(jtfne.verify_store(complete), "SPK", (0, 1, 0), file)
    with pytest.raises(jtfne.StoreError, match=named("SPK", (0, 1, 0), file)):
        int(jtfne.open_signals(complete)["SPK"].sum())
    file = complete / "Vm" / "c" / "0" / "2" / "0"
    damage(file, "truncate")
    assert ("Vm", (0, 2, 0), str(file)) in [(d.array, d.chunk, d.file) for d in jtfne.verify_store(complete).damaged]
    # such a store may lack all-fill coordinate chunks, so a deleted seed chunk reads as seeds 0: the
    # members_digest catches it
    (unfinished / "seed" / "c" / "0").unlink()
    assert [(d.array, d.chunk) for d in jtfne.verify_store(unfinished).damaged] == [("seed", None)]
    with pytest.raises(jtfne.StoreError, match="coordinate 'seed' is damaged"):
        jtfne.open_signals(unfinished, allow_incomplete=True)


def info(path) -> tuple:
    """``jaxfne info``'s summary, its chunk-files line and its integrity line."""
    summary = cli.store_summary(path)
    return summary, cli.chunk_files_line(summary), cli.verification_line(summary)


def test_cli_verify_exit_codes_and_info_shows_the_state(stores, tmp_path, capsys):
    path = copy(stores["run"], tmp_path / "run.zarr")
    summary, files, verified = info(path)
    assert files == f"all {summary['expected_chunks']} present" and verified.startswith("not verified")
    assert cli.main(["verify", str(path)]) == 0
    assert "result   intact" in capsys.readouterr().out
    summary, files, verified = info(path)
    assert summary["verification"]["state"] == "intact" and verified.startswith("verified intact at 20")
    assert json.loads((path / _verify.RECORD).read_text())["intact"] is True
    assert cli.main(["info", str(path)]) == 0
    assert "integrity    verified intact at 20" in capsys.readouterr().out
    damage(path / "Vm" / "c" / "0" / "1" / "0", "flip")               # a file changes: the record is outdated
    assert info(path)[2].startswith("verified intact at") and "files changed since" in info(path)[2]
    damage(path / "spike_events" / "neuron" / "c" / "0" / "3" / "0", "delete")   # a listing shows it at once
    assert info(path)[1].startswith(f"DAMAGED: 1 of {summary['expected_chunks']} missing or empty "
                                    "(first: spike_events/neuron chunk (0, 3, 0)")
    assert cli.main(["verify", str(path), "--json"]) == cli.EXIT_DAMAGED == 3
    got = json.loads(capsys.readouterr().out)
    assert got["intact"] is False and [(d["array"], d["chunk"]) for d in got["damaged"]] == \
        [("Vm", [0, 1, 0]), ("spike_events/neuron", [0, 3, 0])]
    assert info(path)[2] == f"damaged: 2 chunks (verified at {got['verified_at']}; jaxfne verify lists them)"
    assert cli.main(["verify", str(tmp_path / "nothing.zarr")]) == cli.EXIT_USAGE == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_verify_in_a_real_process(stores, tmp_path):
    path = copy(stores["run"], tmp_path / "run.zarr")
    damage(path / "LFP-proxy" / "c" / "0" / "0" / "0", "truncate")
    proc = subprocess.run([sys.executable, "-m", "jaxfne.cli", "verify", str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "LFP-proxy chunk (0, 0, 0): checksum (CRC-32C) mismatch" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "jaxfne.cli", "info", str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "integrity    damaged: 1 chunks" in proc.stdout, proc.stderr
