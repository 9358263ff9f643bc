"""The benchmark harness behind ``jaxfne bench`` and bench/run.py (measures nothing about speed here)."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxfne import cli
from jaxfne.bench._suite import compile_seconds


def test_compile_seconds_counts_compilation_only():
    fn = jax.jit(lambda x: jnp.sin(x) * 3.0 + jnp.cos(x[::-1]))
    x = jnp.arange(4097.0)
    with compile_seconds() as first:
        fn(x).block_until_ready()
    with compile_seconds() as again:               # the same program: nothing compiled
        fn(x).block_until_ready()
    assert first[0] > 0.0
    assert again[0] == 0.0


def test_jaxfne_bench_writes_its_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--members", "2", "4", "--duration-ms", "20", "--no-baseline",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = [r for r in data["rows"] if r.get("kind") == "ensemble"]
    assert sorted(r["members"] for r in rows) == [2, 4]
    for r in rows:
        assert r["neuron_steps"] == r["members"] * 100 * 200
        assert np.isclose(r["neuron_steps_per_s"], r["neuron_steps"] / r["seconds"])
        assert r["compile_s"] is None or 0.0 <= r["compile_s"] <= r["first_call_s"]
    assert "ensemble" in printed and "n-steps/s" in printed
