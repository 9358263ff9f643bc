"""A non-finite state is reported once per member, at the exact step it began, on both engines; the
command line exits with its own code; health tells numerical instability from network runaway."""

import warnings

import numpy as np
import pytest

import jaxfne as jtfne
from jaxfne import cli
from jaxfne.results._health import REMEDIES
from conftest import needs_native

UNCOUPLED = {"E->E": 0.0, "E->I": 0.0, "I->E": 0.0, "I->I": 0.0}


def diverging(dt_ms=5.0, duration_ms=600.0):
    """An ensemble whose members overflow at different steps: a = 1 with dt = 5 ms multiplies u by
    1 - a dt = -4 each step (tests/test_readout.py); the drive shifts the step at which v and u leave float32 (62, 72, 71)."""
    return (jtfne.Configuration().runtime(duration_ms=duration_ms, dt_ms=dt_ms).column(n=8)
            .connectivity(strength=UNCOUPLED).set_emitter(preset="depolarizing_after_potential")
            .drive(current=0.0, noise=0.0)
            .probes(["SPK", "Vm", "u"])
            .ensemble(seeds=[0], sweep={"drive.current.E": [-1e6, 0.0, 1e3]}))


def first_bad_from_recording(signals) -> np.ndarray:
    """Per member, the first step whose recorded state (Vm: v, or the peak on a spike step; u) is non-finite: the reference,
    read from the recorded traces rather than the driver's replay."""
    v, u = np.asarray(signals["Vm"]), np.asarray(signals["u"])
    bad = ~(np.isfinite(v).all(-1) & np.isfinite(u).all(-1))          # (member, time)
    return np.where(bad.any(1), bad.argmax(1), -1)


@pytest.mark.parametrize("engine", ["xla", pytest.param("native", marks=needs_native)])
def test_first_nonfinite_step_is_exact_and_reported_once(engine):
    model = jtfne.construct(diverging())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signals = jtfne.simulate(model, chunk_ms=100.0, engine=engine)   # 20 steps a chunk, 6 chunks
    ref = first_bad_from_recording(signals)
    assert (ref >= 0).all() and len(set(ref.tolist())) > 1, ref      # each member diverges, not all at once
    assert (ref % 20 != 19).any()                 # the first bad step is inside a chunk, not at its end
    found = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    mentioned = {}
    for msg in found:
        for m, step in __import__("re").findall(r"member (\d+) at step (\d+)", msg):
            assert m not in mentioned, f"member {m} reported twice: {found}"
            mentioned[m] = int(step)
    assert mentioned == {str(m): int(s) for m, s in enumerate(ref)}
    assert f"t = {ref[0] * 5.0:g} ms" in " ".join(found)
    assert not np.asarray(signals["SPK"].coords["state_finite"]).any()


def test_command_line_exits_with_its_own_code_for_a_non_finite_run(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('[runtime]\nduration_ms = 500.0\ndt_ms = 5.0\n[column]\nn = 8\n'
                    '[emitter]\npreset = "depolarizing_after_potential"\n[drive]\ncurrent = 0.0\nnoise = 0.0\n')
    rc = cli.main(["run", str(spec), "--store", str(tmp_path / "s.zarr"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_NONFINITE != 0
    assert "non-finite" in err and "at step" in err and "Traceback" not in err
    assert "done" not in capsys.readouterr().out


def uncoupled(current, dt_ms):
    cfg = (jtfne.Configuration().runtime(duration_ms=100.0, dt_ms=dt_ms).column(n=10)
           .connectivity(strength=UNCOUPLED).drive(current=current, noise=0.0))
    return jtfne.check_health(jtfne.simulate(jtfne.construct(cfg)))


def test_health_tells_euler_overshoot_from_runaway():
    # a strongly negative drive: at dt = 0.1 ms v overshoots to about -1250 mV and the quadratic term
    # throws it past the peak in one step, every other step (5 kHz); at dt = 0.01 ms the cells are silent
    h = uncoupled(-1e4, 0.1)
    assert h.status == "unstable" and h.rate_hz > 2500.0
    assert h.messages == (REMEDIES["unstable"],)
    assert "Reduce dt_ms" in h.messages[0] and "more inhibition does not fix" in h.messages[0]
    assert uncoupled(-1e4, 0.01).status == "silent"
    # a fast but resolved rate (436 Hz at dt = 0.1 ms) is a runaway, with the network remedy
    assert uncoupled(100.0, 0.1).status == "runaway"
