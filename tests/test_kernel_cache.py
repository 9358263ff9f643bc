"""The native engine's kernel cache: never loads a library another user could have written, and
detects a damaged one before loading it (issue: reliability and security, item 1).

Decision logic is tested in-process with a stand-in compiler (fast); one real subprocess per
attack builds and runs the real kernel and proves the planted library never ran. The tests run
as whatever user CI is (often root, which no mode bit stops): "another user" is made with chown
where the process may, else those cases are skipped saying so.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import jax_cache_env, needs_native
from jaxfne.engine import _native

UID = os.getuid()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A home cache that cannot be created (under a regular file) and a temp dir of the test's own."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.delenv("JAXFNE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(_native, "_WARNED", set())
    built = []

    def fake_compile(cc, src, path):           # a stand-in compiler: writes a "library" and its sidecar
        with open(path, "wb") as f:
            f.write(b"genuine library " + src[:16])
        os.chmod(path, 0o700)
        with open(path + ".sha256", "w") as f:
            f.write(_native._digest(path) + "\n")
        built.append(path)
        return ""

    monkeypatch.setattr(_native, "_compiler", lambda: "c++")
    monkeypatch.setattr(_native, "_compiler_version", lambda cc: "c++ (test) 1.0")
    monkeypatch.setattr(_native, "_compile", fake_compile)
    _native._build.cache_clear()
    yield tmp, built
    _native._build.cache_clear()


def _name():
    return f"izh_chunk-{_native._key('c++', _native._source())}.so"


def _plant(folder, mode):
    """An attacker's library with a matching sidecar (the key and the hash are computable by anyone)."""
    folder.mkdir(exist_ok=True)
    lib = folder / _name()
    lib.write_bytes(b"planted")
    (folder / (_name() + ".sha256")).write_text(_native._digest(str(lib)) + "\n")
    os.chmod(folder, mode)
    return lib


def test_a_world_writable_shared_folder_is_refused(isolated):
    tmp, built = isolated
    planted = _plant(tmp / f"jaxfne-kernels-{UID}", 0o777)
    with pytest.warns(RuntimeWarning, match=r"private temporary folder .*writable by other users \(mode 0777\)"):
        path, why = _native._build()
    assert why == "" and built == [path]
    assert os.path.dirname(path) != str(planted.parent)
    assert Path(path).read_bytes().startswith(b"genuine")


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root; the mode case covers the rest")
def test_a_shared_folder_owned_by_another_user_is_refused(isolated):
    tmp, built = isolated
    planted = _plant(tmp / f"jaxfne-kernels-{UID}", 0o700)
    os.chown(planted.parent, 65534, 65534)
    with pytest.warns(RuntimeWarning, match=r"owned by uid 65534, not by this user"):
        path, _ = _native._build()
    assert os.path.dirname(path) != str(planted.parent) and built == [path]


def test_a_library_writable_by_others_in_our_own_folder_is_not_loaded(isolated):
    tmp, built = isolated
    folder = tmp / f"jaxfne-kernels-{UID}"
    lib = _plant(folder, 0o700)
    os.chmod(lib, 0o666)
    with pytest.warns(RuntimeWarning, match="rebuilding the native engine: .*writable by other users"):
        path, _ = _native._build()
    assert path == str(lib) and built == [path]
    assert lib.read_bytes().startswith(b"genuine")


def test_the_private_temp_folder_is_created_0700_and_reused(isolated):
    tmp, built = isolated
    path, _ = _native._build()
    folder = os.path.dirname(path)
    assert folder == str(tmp / f"jaxfne-kernels-{UID}")
    assert os.stat(folder).st_mode & 0o777 == 0o700
    _native._build.cache_clear()
    assert _native._build() == (path, "") and len(built) == 1            # verified and reused, not rebuilt


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "no-sidecar"])
def test_a_damaged_cached_library_is_detected_and_rebuilt(isolated, damage):
    tmp, built = isolated
    path, _ = _native._build()
    data = Path(path).read_bytes()
    if damage == "truncate":
        Path(path).write_bytes(data[:5])
    elif damage == "flip":
        Path(path).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    elif damage == "empty":
        Path(path).write_bytes(b"")
    else:
        os.remove(path + ".sha256")
    _native._build.cache_clear()
    with pytest.warns(RuntimeWarning, match="rebuilding the native engine"):
        assert _native._build() == (path, "")
    assert len(built) == 2 and Path(path).read_bytes() == data


def test_the_compiler_version_is_part_of_the_key(monkeypatch):
    src = _native._source()
    monkeypatch.setattr(_native, "_compiler_version", lambda cc: "g++ 12.2")
    k12 = _native._key("g++", src)
    monkeypatch.setattr(_native, "_compiler_version", lambda cc: "g++ 13.1")
    assert _native._key("g++", src) != k12


# -- real builds, real processes ---------------------------------------------------------------

PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void pwn(void) {
  FILE* f = fopen(getenv("JAXFNE_TEST_MARKER"), "w");
  if (f) { fputs("planted code ran", f); fclose(f); }
}
"""

RUN = textwrap.dedent("""
    import jaxfne as jtfne
    from jaxfne.engine import _native
    cfg = (jtfne.Configuration().runtime(duration_ms=5.0).column(n=20).probes(["SPK"]))
    s = jtfne.simulate(jtfne.construct(cfg), engine="native")
    print("engine", s.dataset.attrs["engine"])
    print("library", _native._build()[0])
""")


def _library(proc):
    """The path of the library the victim process built or loaded (its ``_build()``), as it printed it."""
    return next(line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("library "))


def _run(env):
    return subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", RUN], env=env,
                          capture_output=True, text=True, timeout=300)


@needs_native
@pytest.mark.parametrize("attack", ["planted-before", "world-writable-folder"])
def test_a_planted_library_never_runs(tmp_path, attack):
    """Both ways found: a library planted in the predictable temp folder before the victim's first
    run, and a folder pre-created 0777 so the library can be swapped after the victim builds."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    marker = tmp_path / "marker"
    env = {k: v for k, v in os.environ.items() if k != "JAXFNE_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(blocker / "cache"), TMPDIR=str(tmp), JAXFNE_TEST_MARKER=str(marker),
               **jax_cache_env())
    folder = tmp / f"jaxfne-kernels-{UID}"
    folder.mkdir()
    os.chmod(folder, 0o777)
    if attack == "planted-before":
        # the name the victim will look for, from this process's key function (the key reads none of the
        # variables set above); the victim's own name is checked against it below, so a planted library the
        # victim never looked for cannot pass (this used to be one more interpreter importing jaxfne, ~5 s)
        name = f"izh_chunk-{_native._key(_native._compiler(), _native._source())}.so"
        src = tmp_path / "planted.c"
        src.write_text(PLANTED_C)
        subprocess.run([_native._compiler(), "-shared", "-fPIC", "-x", "c", str(src), "-o", str(folder / name)],
                       check=True)
        (folder / (name + ".sha256")).write_text(_native._digest(str(folder / name)) + "\n")
        if os.getuid() == 0:
            os.chown(folder, 65534, 65534)       # as another user would have made it
    proc = _run(env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "engine native" in proc.stdout
    assert not marker.exists(), "the planted library was loaded"
    assert [p for p in os.listdir(folder) if p.endswith(".so")] == ([] if attack != "planted-before" else [name])
    victims = _library(proc)
    assert os.path.dirname(victims) != str(folder)          # built in a fresh private folder instead
    if attack == "planted-before":
        assert os.path.basename(victims) == name            # the very library planted was the one it looked for


@needs_native
def test_a_truncated_real_library_is_rebuilt_not_loaded(tmp_path):
    """A truncated .so used to kill the process with SIGBUS (exit 135) before any message."""
    env = dict(os.environ, JAXFNE_CACHE_DIR=str(tmp_path / "cache"), **jax_cache_env())
    # the cache starts as a real build leaves it: this machine's library (built once for the suite) and its
    # sidecar, copied in; saves a second ~20 s compile, as the run below proves it loads and runs
    built, why = _native._build()
    assert built is not None, why
    kernels = tmp_path / "cache" / "kernels"
    kernels.mkdir(parents=True, mode=0o700)
    lib = kernels / os.path.basename(built)
    lib.write_bytes(Path(built).read_bytes())
    os.chmod(lib, 0o700)
    (kernels / (lib.name + ".sha256")).write_text(Path(built + ".sha256").read_text())
    first = _run(env)
    assert first.returncode == 0 and "engine native" in first.stdout, first.stderr[-2000:]
    assert [p.name for p in kernels.iterdir() if p.suffix == ".so"] == [lib.name]      # loaded, not rebuilt
    assert _library(first) == str(lib)
    good = lib.read_bytes()
    lib.write_bytes(good[: len(good) // 3])
    again = subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-c", RUN], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "engine native" in again.stdout and _library(again) == str(lib)
    assert "rebuilding the native engine" in again.stderr and "does not match its recorded SHA-256" in again.stderr
    assert _native._digest(str(lib)) == (kernels / (lib.name + ".sha256")).read_text().strip()
