#!/usr/bin/env bash
# GPU check for jaxfne: correctness against the CPU, then the scaling table on the GPU.
#
#   bench/gpu_check.sh OUTDIR            # on a GPU machine, from the repository root
#
# Time: the first run on an H200 (2026-11-26, bench/RESULTS.md section 6) took 364 s: correctness 25 s,
# the step's forms 140 s (of which ~50 s the ordered forms at 65536 members, now skipped), command
# buffers 25 s, the table 173 s (of which ~25 s baseline budget, now 2 s a size). The defaults below
# are cut (fewer table rows and forms) but a device-memory stage was added: about 4-5 minutes,
# estimated from those stage times; not re-timed on a GPU since. The devices stage (1 vs all devices)
# came later and has never run on a GPU: its time there is unknown (240 s cap).
#   PYTHON=.venv/bin/python JAXFNE_GPU_CHECK_ALLOW_CPU=1 bench/gpu_check.sh /tmp/out   # dry run on a CPU box
#
# Installs nothing from the network. zarr, numcodecs, dask, xarray and the pure-Python packages
# they need that the GPU image lacks are installed from wheels in .whl/ (ignored by git) into
# /tmp/jaxfne-site, only when `import zarr, numcodecs, dask, xarray` fails (or
# JAXFNE_GPU_CHECK_FORCE_WHEELS=1). Fetch them on a machine with pip access, in the repository root
# (Python 3.12, manylinux x86_64; the GPU image already has numpy, pandas, matplotlib, packaging,
# pyyaml, toolz, cloudpickle, fsspec, click, typing-extensions):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     zarr==3.4.2 numcodecs==0.17.1 dask==2026.8.0 xarray==2026.9.0 partd==1.4.2 locket==1.0.0 \
#     donfig==0.8.1.post1 google-crc32c==1.9.0 msgspec==0.22.0
#
# (about 5 MB; carry .whl with the run: the device tool's `carry: [".whl"]`).
#
# Writes to OUTDIR (at most 8 files, so that a device run's $OUT comes back whole):
#   env.txt            GPU, driver, Python, jax/jaxlib, package versions, git commit, date
#   correctness.txt    GPU vs CPU on the same small ensemble: rates, first 200 steps of Vm, spike trains;
#                      then the device's peak memory for a streamed run of 100 ms and of 400 ms
#   correctness.json   the same numbers
#   variants.txt       bench/gpu_variants.py: the XLA step's forms (event loop or ordered input, boolean or
#                      bit-packed spikes), chunk calls only, device and with the host copy, bandwidth floor;
#                      then the event-loop form again with while loops in CUDA command buffers
#   variants.json      the same rows
#   run.txt            the scaling table (bench/run.py) on the GPU; then the devices stage: the same ensembles
#                      on 1 device and on every device (time, neuron-steps/s, speed-up, efficiency) and
#                      whether the members' spikes are bit-identical on 1 and on all devices
#   run.json           its rows and machine info
#   log.txt            everything printed
#
# Environment: PYTHON (default python3), JAXFNE_GPU_CHECK_ALLOW_CPU=1 (run on the CPU when no GPU is
# found: a smoke test of this script, small sizes), JAXFNE_GPU_CHECK_RUN_ARGS (replaces the
# arguments of bench/run.py), JAXFNE_GPU_CHECK_STAGES (default "correctness variants memory run devices": which
# parts run), JAXFNE_GPU_CHECK_DEVICES_MEMBERS (ensemble sizes of the devices stage; default 16384 65536 on
# GPUs, 16 64 on the CPU dry run, which forces 2 host devices so that "all devices" is more than one).
set -euo pipefail

OUTDIR=${1:?usage: bench/gpu_check.sh OUTDIR}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
LOG="$OUTDIR/log.txt"
: > "$LOG"
export PYTHONUNBUFFERED=1
START=$(date +%s)

say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG" >&2; }

# -- packages ----------------------------------------------------------------------------------
if [ -n "${JAXFNE_GPU_CHECK_FORCE_WHEELS:-}" ] || ! "$PY" -c "import zarr, numcodecs, dask, xarray" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    say "zarr/numcodecs/dask/xarray missing and no wheels in .whl/ (see this script's header)"; exit 2
  fi
  say "installing wheels from .whl/ into /tmp/jaxfne-site (no network)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/jaxfne-site .whl/*.whl >>"$LOG" 2>&1
  export PYTHONPATH=/tmp/jaxfne-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

# -- environment -------------------------------------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown) $(git status --porcelain --untracked-files=no 2>/dev/null | wc -l) modified files"
  echo "host: $(uname -a)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
  (nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "nvidia-smi: not available")
  "$PY" - <<'EOF'
import importlib, sys
print("python:", sys.version.split()[0], sys.executable)
for name in ("jax", "jaxlib", "numpy", "zarr", "numcodecs", "dask", "xarray", "pandas"):
    try:
        m = importlib.import_module(name)
        print(f"{name}: {getattr(m, '__version__', '?')} ({getattr(m, '__file__', '?')})")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: missing ({exc})")
import jax
print("devices:", jax.devices())
EOF
} > "$OUTDIR/env.txt" 2>&1
cat "$OUTDIR/env.txt" >> "$LOG"

if "$PY" -c "import jax, sys; sys.exit(0 if jax.devices()[0].platform == 'gpu' else 1)" 2>>"$LOG"; then
  ON_GPU=1
  say "GPU found"
elif [ -n "${JAXFNE_GPU_CHECK_ALLOW_CPU:-}" ]; then
  ON_GPU=0
  say "no GPU; JAXFNE_GPU_CHECK_ALLOW_CPU=1: running the checks on the CPU at small sizes"
else
  say "no GPU found (jax.devices(): $("$PY" -c 'import jax; print(jax.devices())' 2>&1 | tail -1)); set JAXFNE_GPU_CHECK_ALLOW_CPU=1 for a CPU dry run"
  exit 3
fi
export ON_GPU

STAGES=" ${JAXFNE_GPU_CHECK_STAGES:-correctness variants memory run devices} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }

# -- correctness: the same ensemble on the GPU and on the CPU ---------------------------------
if stage correctness; then
say "correctness: GPU vs CPU"
"$PY" - "$OUTDIR" <<'EOF' 2>&1 | tee -a "$LOG" || say "correctness check stopped (exit $?)"
import json, os, sys, time
import numpy as np
import jax
import jaxfne as jtfne
from jaxfne.bench._suite import tutorial

out = sys.argv[1]
on_gpu = os.environ.get("ON_GPU") == "1"
members, duration_ms = (256, 500.0) if on_gpu else (16, 100.0)
cfg = tutorial(duration_ms, probes=("SPK", "Vm", "source")).ensemble(seeds=list(range(members)))
model = jtfne.construct(cfg)
accel = jax.devices("gpu")[:1] if on_gpu else jax.devices("cpu")[:1]
cpu = jax.devices("cpu")[:1]
res = {"members": members, "duration_ms": duration_ms, "accelerator": str(accel[0]), "cpu": str(cpu[0])}
runs = {}
for name, devs in (("accel", accel), ("cpu", cpu)):
    t = time.perf_counter()
    sig = jtfne.simulate(model, devices=devs, engine="xla")     # the same implementation on both platforms
    res[f"{name}_seconds_incl_compile"] = time.perf_counter() - t
    runs[name] = {k: np.asarray(sig[k].values) for k in ("SPK", "Vm", "source")}
a, c = runs["accel"], runs["cpu"]
n_steps = a["SPK"].shape[1]
rate = lambda s: s.sum(axis=(1, 2)) / (s.shape[2] * s.shape[1] * 1e-4)          # per member, Hz
ra, rc = rate(a["SPK"]), rate(c["SPK"])
# first step at which each member's raster differs (n_steps when identical)
differs = (a["SPK"] != c["SPK"]).any(axis=2)
first = np.where(differs.any(axis=1), differs.argmax(axis=1), n_steps)
vm_diff = np.abs(a["Vm"][:, :200] - c["Vm"][:, :200])
vm_first = np.where((vm_diff > 0).any(axis=(0, 2)))[0]
ulp = np.abs(a["Vm"][:, :200].view(np.int32).astype(np.int64) - c["Vm"][:, :200].view(np.int32).astype(np.int64))
res.update({
    "n_steps": int(n_steps),
    "spike_trains_identical_members": int((first == n_steps).sum()),
    "first_differing_step_min": int(first.min()), "first_differing_step_median": float(np.median(first)),
    "vm_first200_max_abs_diff_mV": float(vm_diff.max()),
    "vm_first200_max_ulp_diff": int(ulp.max()),
    "vm_first200_first_step_with_any_difference": int(vm_first[0]) if len(vm_first) else None,
    "vm_first200_bitwise_identical": bool((vm_diff == 0).all()),
    "rate_hz_mean_accel": float(ra.mean()), "rate_hz_mean_cpu": float(rc.mean()),
    "rate_hz_sem_cpu": float(rc.std(ddof=1) / np.sqrt(members)) if members > 1 else None,
    "rate_hz_max_member_abs_diff": float(np.abs(ra - rc).max()),
    "all_finite_accel": bool(np.isfinite(a["Vm"]).all()), "all_finite_cpu": bool(np.isfinite(c["Vm"]).all()),
})
z = (res["rate_hz_mean_accel"] - res["rate_hz_mean_cpu"]) / max(res["rate_hz_sem_cpu"] or 1e-9, 1e-9)
res["rate_mean_difference_in_sem"] = float(z)
ok = res["all_finite_accel"] and abs(z) < 4 and res["first_differing_step_min"] > 0
# a member's bits on the accelerator do not depend on the ensemble it runs in
head = min(16, members)
alone = jtfne.simulate(jtfne.construct(tutorial(duration_ms, probes=("SPK", "Vm", "source"))
                                       .ensemble(seeds=list(range(head)))), devices=accel, engine="xla")
res["accel_first_members_alone_identical"] = bool(
    all(np.array_equal(np.asarray(alone[k].values), a[k][:head]) for k in ("SPK", "Vm", "source")))
ok = ok and res["accel_first_members_alone_identical"]
res["verdict"] = "ok" if ok else "CHECK"
lines = [f"GPU vs CPU, {members} members x 100 neurons, {duration_ms:g} ms ({n_steps} steps), float32",
         f"  accelerator {res['accelerator']} vs {res['cpu']}",
         f"  spike trains identical over the whole run: {res['spike_trains_identical_members']}/{members} members;"
         f" first differing step: min {res['first_differing_step_min']}, median {res['first_differing_step_median']:g}",
         f"  Vm, first 200 steps: bitwise identical {res['vm_first200_bitwise_identical']}, max |diff| "
         f"{res['vm_first200_max_abs_diff_mV']:.3g} mV, max {res['vm_first200_max_ulp_diff']} ulp, first step with a "
         f"difference {res['vm_first200_first_step_with_any_difference']}",
         f"  mean rate {res['rate_hz_mean_accel']:.3f} Hz (accel) vs {res['rate_hz_mean_cpu']:.3f} Hz (cpu), "
         f"difference {z:+.2f} SEM; max per-member |diff| {res['rate_hz_max_member_abs_diff']:.3f} Hz",
         f"  finite: accel {res['all_finite_accel']}, cpu {res['all_finite_cpu']}",
         f"  accelerator: the first {head} members run alone give the same bits as in the ensemble: "
         f"{res['accel_first_members_alone_identical']}",
         f"  verdict: {res['verdict']} (float32 chaos: trajectories part once rounding differs, e.g. erf_inv/log1p or "
         "FMA contraction; rates must agree statistically)"]
print("\n".join(lines))
open(os.path.join(out, "correctness.txt"), "w").write("\n".join(lines) + "\n")
json.dump(res, open(os.path.join(out, "correctness.json"), "w"), indent=2)
EOF
fi

# -- the XLA step's forms, chunk calls only ---------------------------------------------------
if [ "$ON_GPU" = 1 ]; then
  VARIANT_ARGS="--members 16 1024 16384 65536 --unshared-members 16384 --chunk-steps 500 --calls 3 \
    --ordered-max-members 16384"
  CMDBUF_ARGS="--members 16384 --unshared-members --chunk-steps 500 --calls 2 --forms ff"
else
  VARIANT_ARGS="--members 16 64 --unshared-members 16 --chunk-steps 100 --calls 1"
  CMDBUF_ARGS="--members 16 --unshared-members --chunk-steps 100 --calls 1 --forms ff,tt"
fi
if stage variants; then
  say "XLA step forms: bench/gpu_variants.py $VARIANT_ARGS"
  # shellcheck disable=SC2086
  timeout 150 "$PY" bench/gpu_variants.py $VARIANT_ARGS --json "$OUTDIR/variants.json" 2>>"$LOG" \
    | tee "$OUTDIR/variants.txt" | tee -a "$LOG" || say "gpu_variants.py stopped (exit $?)"
fi
if [ "$ON_GPU" = 1 ] && stage variants; then
  say "XLA step forms with while loops in CUDA command buffers"
  echo "--- XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUSTOM_CALL,WHILE,CONDITIONAL" \
    | tee -a "$OUTDIR/variants.txt"
  # shellcheck disable=SC2086
  XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUSTOM_CALL,WHILE,CONDITIONAL" \
    timeout 60 "$PY" bench/gpu_variants.py $CMDBUF_ARGS 2>>"$LOG" | tee -a "$OUTDIR/variants.txt" | tee -a "$LOG" \
    || say "command-buffer run stopped (exit $?)"
fi

# -- device memory does not grow with duration ------------------------------------------------
if stage memory; then
  say "device memory: peak bytes of a streamed run, 100 ms vs 400 ms, each in a fresh process"
  for ms in 100 400; do
    timeout 90 "$PY" - "$ms" <<'EOF' 2>>"$LOG" | tee -a "$OUTDIR/correctness.txt" | tee -a "$LOG" || say "memory check stopped (exit $?)"
import sys, tempfile
import jax
import jaxfne as jtfne
from jaxfne.bench._suite import tutorial
ms = float(sys.argv[1])
members = 4096 if jax.devices()[0].platform != "cpu" else 16
cfg = tutorial(ms, probes=("SPK", "Vm")).probes(["SPK", "Vm"], neurons=5).ensemble(seeds=list(range(members)))
jtfne.simulate(jtfne.construct(cfg), chunk_ms=25.0, store=tempfile.mkdtemp() + "/m.zarr")
stats = jax.devices()[0].memory_stats() or {}
peak = stats.get("peak_bytes_in_use")
print(f"# device memory, {members} members streamed (SPK + Vm of 10 cells, 25-ms chunks), {ms:g} ms: peak "
      + (f"{peak / 2**20:.0f} MiB" if peak is not None else "n/a (no memory_stats on this platform)"))
EOF
  done
fi

# -- the scaling table on the GPU ------------------------------------------------------------
if [ "$ON_GPU" = 1 ]; then
  DEFAULT_ARGS="--devices 1 --peers --duration-ms 100 --chunk-ms 50 --members 16 1024 16384 \
    --shared-members 16384 65536 --neurons 1000 10000 --stream-members 16384 --stream-vm-cells 5 \
    --baseline-budget-s 2 --engines xla"
else
  DEFAULT_ARGS="--devices 1 --peers --duration-ms 50 --chunk-ms 25 --members 16 64 --shared-members 64 \
    --neurons 300 --stream-members 64 --baseline-budget-s 2 --engines xla native"
fi
RUN_ARGS=${JAXFNE_GPU_CHECK_RUN_ARGS:-$DEFAULT_ARGS}
if stage run; then
  say "scaling table: bench/run.py $RUN_ARGS"
  # shellcheck disable=SC2086
  timeout "${JAXFNE_GPU_CHECK_RUN_TIMEOUT_S:-200}" "$PY" bench/run.py $RUN_ARGS --json "$OUTDIR/run.json" 2>>"$LOG" \
    | tee "$OUTDIR/run.txt" | tee -a "$LOG" || say "bench/run.py stopped (exit $?)"
fi

# -- 1 device vs every device: the member axis sharded over all of them -------------------------
if stage devices; then
  if [ "$ON_GPU" = 1 ]; then
    DEV_MEMBERS=${JAXFNE_GPU_CHECK_DEVICES_MEMBERS:-16384 65536}
    DEV_XLA_FLAGS=${XLA_FLAGS:-}
  else
    DEV_MEMBERS=${JAXFNE_GPU_CHECK_DEVICES_MEMBERS:-16 64}
    DEV_XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=2"
  fi
  say "devices: 1 vs all, ensembles of $DEV_MEMBERS members"
  # shellcheck disable=SC2086
  XLA_FLAGS="$DEV_XLA_FLAGS" timeout "${JAXFNE_GPU_CHECK_DEVICES_TIMEOUT_S:-240}" "$PY" - $DEV_MEMBERS <<'EOF' \
    2>>"$LOG" | tee -a "$OUTDIR/run.txt" | tee -a "$LOG" || say "devices stage stopped (exit $?)"
import json, sys
import numpy as np
import jax
import jaxfne as jtfne
from jaxfne.bench._suite import Case, measure_side_by_side, tutorial

platform = jax.devices()[0].platform
devices = [d for d in jax.devices() if d.platform == platform]
one, every = devices[:1], devices
print(f"# devices: 1 vs {len(every)} {platform} device(s) ({every[0].device_kind}); tutorial network (100 cells), "
      "per-member weights, SPK to host memory, 100 ms in 50-ms chunks, engine xla; best of 2 timed calls")
if len(every) == 1:
    print("# only one device here: both rows run on it; no scaling is measured")
# the members' bits do not depend on the device count (checked on a small ensemble first)
small = jtfne.construct(tutorial(50.0).ensemble(seeds=list(range(4 * len(every)))))
a = np.asarray(jtfne.simulate(small, devices=one, engine="xla")["SPK"].values)
b = np.asarray(jtfne.simulate(small, devices=every, engine="xla")["SPK"].values)
print(f"# spikes of {a.shape[0]} members on 1 and on {len(every)} devices bit-identical: {np.array_equal(a, b)}")
print(f"{'members':>8} {'devices':>7} {'seconds':>8} {'neuron-steps/s':>15} {'speed-up':>8} {'efficiency':>10}")
rows = []
for members in map(int, sys.argv[1:]):
    case = Case("ensemble", members=members, duration_ms=100.0, chunk_ms=50.0, engine="xla")
    r1, rn = measure_side_by_side([(case, one), (case, every)], rounds=2)
    for n, r in ((1, r1), (len(every), rn)):
        speedup = r1["seconds"] / r["seconds"]
        rows.append({"members": members, "devices": n, "seconds": r["seconds"],
                     "neuron_steps_per_s": r["neuron_steps_per_s"], "speedup": speedup, "efficiency": speedup / n})
        print(f"{members:>8} {n:>7} {r['seconds']:>8.3f} {r['neuron_steps_per_s']:>15.3g} {speedup:>8.2f} "
              f"{speedup / n:>10.2f}")
print("# json: " + json.dumps({"platform": platform, "devices": len(every), "identical": bool(np.array_equal(a, b)),
                                "rows": rows}))
EOF
fi
say "done in $(( $(date +%s) - START )) s; results in $OUTDIR"
