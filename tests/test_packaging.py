"""pyproject.toml's JAX bounds hold the JAX the tests run with: a JAX outside the declared bounds (the
environment drifted, or a bound was moved without testing) fails here, visibly in CI."""

import importlib.metadata as metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
CORE = {r.name: r for r in map(Requirement, PROJECT["dependencies"])}
GPU_EXTRAS = {name: [Requirement(r) for r in reqs]
              for name, reqs in PROJECT["optional-dependencies"].items() if name.startswith("cuda")}


def _installed(name) -> Version:
    return Version(metadata.version(name))


def _upper_bounded(spec) -> bool:
    return any(s.operator in ("<", "<=", "==", "~=") for s in spec)


@pytest.mark.parametrize("name", ["jax", "jaxlib"])
def test_installed_jax_is_inside_the_core_bounds(name):
    req = CORE[name]
    assert req.specifier.contains(_installed(name)), (
        f"{name} {_installed(name)} is installed but pyproject.toml declares {req}: test this version and move "
        "the bounds, or install one inside them")
    assert _upper_bounded(req.specifier), f"{req}: JAX must be bounded above by the versions tested"


def test_gpu_extras_pin_the_tested_jax_with_its_cuda_plugin():
    assert sorted(GPU_EXTRAS) == ["cuda12", "cuda13"]
    jax_extras = set(metadata.metadata("jax").get_all("Provides-Extra") or [])
    for extra, reqs in GPU_EXTRAS.items():
        assert [r.name for r in reqs] == ["jax"], (extra, [str(r) for r in reqs])
        req = reqs[0]
        # jaxfne[cuda13] installs jax[cuda13]: the extra of the same name, which this JAX provides
        assert req.extras == {extra} and extra in jax_extras, (extra, str(req), sorted(jax_extras))
        assert req.specifier.contains(_installed("jax")), f"jaxfne[{extra}]: {req} excludes jax {_installed('jax')}"
        assert req.specifier == CORE["jax"].specifier, f"jaxfne[{extra}]: {req} differs from the core {CORE['jax']}"


def test_jax_and_jaxlib_are_one_release():
    # jax declares the jaxlib it works with; the installed pair must be one the core's bounds allow together
    jax_requires = [Requirement(r) for r in metadata.requires("jax") or []]
    jaxlib_req = next(r for r in jax_requires if r.name == "jaxlib" and r.marker is None)
    assert jaxlib_req.specifier.contains(_installed("jaxlib"))
    assert CORE["jax"].specifier == CORE["jaxlib"].specifier
