"""A user's mistake on the command line exits 2 with a message naming the file or option, never a traceback."""

import os
import subprocess
import sys

import pytest

import jaxfne as jtfne
from jaxfne.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("kind", ["not-utf8", "folder", "unreadable", "bad-value"])
def test_bad_specs_are_named(tmp_path, capsys, monkeypatch, kind):
    spec = tmp_path / "spec.toml"
    if kind == "not-utf8":
        spec.write_bytes(b"[runtime]\nduration_ms = 10.0 # \xff\xfe\n")
        want = "is not UTF-8 text"
    elif kind == "folder":
        spec.mkdir()
        want = "is a folder"
    elif kind == "unreadable":
        spec.write_text("[runtime]\n")
        spec.chmod(0)
        if os.getuid() == 0:          # root reads any file: the kernel's refusal, as another user gets it
            real = type(spec).read_text

            def refuse(self, *a, **kw):
                if self == spec:
                    raise PermissionError(13, "Permission denied", str(self))
                return real(self, *a, **kw)
            monkeypatch.setattr(type(spec), "read_text", refuse)
        want = "cannot be read (permission denied)"
    else:
        spec.write_text("[runtime]\ndt_ms = -1.0\n")
        want = "dt_ms=-1.0 is invalid"
    rc, err = run(capsys, "run", str(spec), "--store", str(tmp_path / "s.zarr"), "--quiet")
    assert rc == 2 and str(spec) in err and want in err, err


def test_a_repeated_sweep_value_is_refused():
    with pytest.raises(jtfne.ConfigurationError, match=r"sweep\['drive.current.E'\].*values must not repeat"):
        jtfne.Configuration().ensemble(seeds=[1], sweep={"drive.current.E": [4.0, 5.0, 4.0]})


def test_plot_into_a_file_and_analyze_onto_a_read_only_path(tmp_path, capsys):
    cfg = jtfne.Configuration().runtime(duration_ms=20.0).column(n=10).probes(["SPK"])
    jtfne.simulate(jtfne.construct(cfg), store=tmp_path / "s.zarr")
    target = tmp_path / "a_file.png"
    target.write_text("x")
    rc, err = run(capsys, "plot", str(tmp_path / "s.zarr"), "--out", str(target))
    assert rc == 2 and "--out" in err and "is a file" in err
    rc, err = run(capsys, "analyze", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "missing" / "dir" / "x.csv"))
    assert rc == 2 and "--out" in err and "cannot be written" in err


def test_no_traceback_in_a_real_process(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"\xff\xfe\x00")
    proc = subprocess.run([sys.executable, "-m", "jaxfne.cli", "run", str(spec), "--store", str(tmp_path / "s.zarr")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "is not UTF-8 text" in proc.stderr
