// jaxfne native CPU engine: a batch of Izhikevich E/I networks advanced by a
// whole chunk of time steps in one XLA FFI call.
//
// The model is the one in jaxfne/engine/_step.py (forward Euler or the Izhikevich (2003) scheme,
// exponential current, delta or conductance synapses per pathway, event-driven recurrent input in
// ascending presynaptic index order, delay classes through ring buffers, the same counter-based noise
// stream, drawn every step or held for several, the stimuli's currents, trials at listed onsets,
// array-driven ones and Poisson rate profiles from a table shared by every member or one per member).
// The options (integrator, noise hold, conductance, array stimuli, profiles) are decided once per call
// or per stimulus and step (a conductance pathway's current is chosen per neuron by its type, a
// select): the default path (Euler, noise every step, current synapses, no table) runs the same loops.
// Loop order: member -> step -> neuron, so a member's state stays in L1 for
// the whole chunk; the per-neuron loop is written to auto-vectorise.
//
// Reproducibility: compiled with -ffp-contract=off and without fast-math, and
// the logarithm of the noise transform is our own polynomial (no libm), so a
// member's result is the same whether a neuron falls in a vector body or a
// scalar remainder, whatever the vector width of the machine, the number of
// threads, the batch size or the member's position in the batch.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ffi = xla::ffi;

namespace {

inline uint32_t mix32(uint32_t x) {  // lowbias32 (C. Wellons), as _step._mix32
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Natural log for normal positive floats (Cephes logf polynomial, branch-free).
inline float log_f32(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xFFu) - 126;  // x = m 2^e, m in [0.5, 1)
  uint32_t mbits = (bits & 0x007FFFFFu) | 0x3F000000u;
  float m;
  std::memcpy(&m, &mbits, 4);
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? (m + m) - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292E-2f;   // fused multiply-adds: exactly specified, so the same in every lane and machine
  y = std::fma(y, m, -1.1514610310E-1f);
  y = std::fma(y, m, 1.1676998740E-1f);
  y = std::fma(y, m, -1.2420140846E-1f);
  y = std::fma(y, m, 1.4249322787E-1f);
  y = std::fma(y, m, -1.6668057665E-1f);
  y = std::fma(y, m, 2.0000714765E-1f);
  y = std::fma(y, m, -2.4999993993E-1f);
  y = std::fma(y, m, 3.3333331174E-1f);
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y = std::fma(-2.12194440e-4f, fe, y);
  y = std::fma(-0.5f, z, y);
  return std::fma(0.693359375f, fe, m + y);
}

// The noise level of _step.noise_sample: x = (2k + 1 - 2^24) / 2^24, k = h >> 8.
template <typename T>
inline T level_x(uint32_t h) {
  const int32_t k = static_cast<int32_t>(h >> 8);
  return static_cast<T>(2 * k + (1 - (1 << 24))) * static_cast<T>(1.0 / 16777216.0);
}

// sqrt(2) erfinv(x), float: M. Giles' single-precision approximation (the one
// XLA uses for erf_inv), with 1 - x^2 formed as (1 - x)(1 + x).
// Its two branches, split so the common one vectorises alone: w0 = -log(1 - x^2)
// is below 5 for |z| < 2.9 (99.6 % of draws); the tail is computed for the rest.
inline float erfinv_w(float x) { return -log_f32((1.0f - x) * (1.0f + x)); }

inline float std_normal_central(float x, float w0) {
  const float w = w0 - 2.5f;
  float p = 2.81022636e-08f;
  p = std::fma(p, w, 3.43273939e-07f);
  p = std::fma(p, w, -3.5233877e-06f);
  p = std::fma(p, w, -4.39150654e-06f);
  p = std::fma(p, w, 0.00021858087f);
  p = std::fma(p, w, -0.00125372503f);
  p = std::fma(p, w, -0.00417768164f);
  p = std::fma(p, w, 0.246640727f);
  p = std::fma(p, w, 1.50140941f);
  return 1.41421356237309505f * (p * x);
}

inline float std_normal_tail(float x, float w0) {
  const float w = std::sqrt(w0) - 3.0f;
  float p = -0.000200214257f;
  p = std::fma(p, w, 0.000100950558f);
  p = std::fma(p, w, 0.00134934322f);
  p = std::fma(p, w, -0.00367342844f);
  p = std::fma(p, w, 0.00573950773f);
  p = std::fma(p, w, -0.0076224613f);
  p = std::fma(p, w, 0.00943887047f);
  p = std::fma(p, w, 1.00167406f);
  p = std::fma(p, w, 2.83297682f);
  return 1.41421356237309505f * (p * x);
}

inline float std_normal(float x) {
  const float w0 = erfinv_w(x);
  return w0 < 5.0f ? std_normal_central(x, w0) : std_normal_tail(x, w0);
}

// sqrt(2) erfinv(x), double: the float approximation (|error| < 1e-6) refined by
// one Halley step on erf (libm; in the tails on erfc against the exact 1 - |x|,
// so no cancellation): the error goes to ~1e-18, below double rounding. With
// f = erf(y) - x, f' = 2/sqrt(pi) exp(-y^2) and f'' = -2 y f', Halley's step is
// y - f / (f' + y f). Odd in x by construction.
inline double std_normal(double x) {
  const double ax = std::fabs(x);
  double y = static_cast<double>(std_normal(static_cast<float>(ax))) / 1.4142135623730951;
  const double f = ax < 0.5 ? std::erf(y) - ax : (1.0 - ax) - std::erfc(y);
  y -= f / (1.1283791670955126 * std::exp(-y * y) + y * f);
  return std::copysign(1.4142135623730951 * y, x);
}

// Standard normal noise of `steps` consecutive steps (words s[k]) for NP lanes:
// independent of the state, so computed ahead in a loop without dependencies. A step whose word is
// its predecessor's (held noise) copies its values: the same function of the same word.
template <typename T>
void noise_block(const int64_t NP, const int64_t steps, const uint32_t* s, const uint32_t* __restrict nc,
                 T* __restrict z) {
  for (int64_t k = 0; k < steps; ++k) {
    const uint32_t sk = s[k];
    T* __restrict zk = z + k * NP;
    if (k > 0 && sk == s[k - 1]) {
      std::memcpy(zk, zk - NP, sizeof(T) * NP);
      continue;
    }
    for (int64_t i = 0; i < NP; ++i) zk[i] = std_normal(level_x<T>(mix32(sk ^ nc[i])));
  }
}

// float: the central branch for every lane (vectorised), then the rare tail lanes
// again; the same values as std_normal, bit for bit.
template <>
void noise_block<float>(const int64_t NP, const int64_t steps, const uint32_t* s, const uint32_t* __restrict nc,
                        float* __restrict z) {
  for (int64_t k = 0; k < steps; ++k) {
    const uint32_t sk = s[k];
    float* __restrict zk = z + k * NP;
    if (k > 0 && sk == s[k - 1]) {
      std::memcpy(zk, zk - NP, sizeof(float) * NP);
      continue;
    }
    int32_t n_tail = 0;
    for (int64_t i = 0; i < NP; ++i) {
      const float x = level_x<float>(mix32(sk ^ nc[i]));
      const float w0 = erfinv_w(x);
      n_tail += w0 < 5.0f ? 0 : 1;
      zk[i] = std_normal_central(x, w0);
    }
    if (n_tail > 0) {
      for (int64_t i = 0; i < NP; ++i) {
        const float x = level_x<float>(mix32(sk ^ nc[i]));
        const float w0 = erfinv_w(x);
        if (!(w0 < 5.0f)) zk[i] = std_normal_tail(x, w0);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The call's signature, declared once here. Inputs are typed buffers in a fixed order: the state,
// then the parameters the kernel reads, then the index of the chunk's first step. Names and dtype
// kinds are those of PARAM_FIELDS / STATE_FIELDS in jaxfne/model/_params.py: jaxfne/engine/_native.py
// builds the call from that declaration and, when it loads this library, compares it with
// jaxfne_kernel_signature() (generated from these lists), so a change on either side without the
// other fails at load time, naming the first difference. FLOAT is the run's dtype.
#define JAXFNE_STATE(X) \
  X(v, FLOAT) X(u, FLOAT) X(s_exc, FLOAT) X(s_inh, FLOAT) X(pend_exc, FLOAT) X(pend_inh, FLOAT)
#define JAXFNE_PARAMS(X)                                                                              \
  X(a, FLOAT) X(b, FLOAT) X(c, FLOAT) X(d, FLOAT) X(is_exc, BOOL) X(w, FLOAT) X(i_mean, FLOAT)        \
  X(noise_scale, FLOAT) X(decay_exc, FLOAT) X(decay_inh, FLOAT) X(dt_ms, FLOAT) X(noise_key, UINT32) \
  X(active, BOOL) X(stim_target, FLOAT) X(stim_steps, UINT32) X(stim_wave, FLOAT) X(stim_key, UINT32)     \
  X(stim_table, FLOAT) X(rev_exc, FLOAT) X(rev_inh, FLOAT) X(stim_onsets, UINT32)
#define JAXFNE_CALL_ARGS(X) X(t0, INT32)
// Results: the new state (aliased to the state inputs), the spikes (every step and neuron; (B, 0, N), not
// written, when the events below are asked for and nothing needs the raster), then the optional raw
// observations this kernel produces (raw observations of jaxfne/_probes.py RAW,
// in RAW order; a probe may declare the native engine only when the kernel produces what it needs),
// each present when its "<name>_mode" attribute is kFull (B, T, N) or kSampled
// (B, ceil(T / sample_stride), K: every sample_stride-th step from the chunk's first, the neurons
// sample_index). Last, when the attribute event_capacity is > 0, the spikes as events
// (jaxfne/engine/_chunk.py compact_spikes): neuron (B, event_capacity; uint16 up to 65536 neurons, else
// int32), step within the chunk (B, event_capacity; uint16 up to 65536 steps, else int32), each member's
// first event_capacity spikes in (step, neuron) order and the rest 0, and count (B,) int32, the member's
// true number of spikes (count > event_capacity: an overflow, the driver computes the chunk again).
#define JAXFNE_OBS(X) X(v, FLOAT) X(u, FLOAT) X(i_syn, FLOAT)
// Attributes: the call's settings (integrator: kEuler or kIzhikevich2003; noise_hold: the noise of
// step t is that of step t / noise_hold; conductance: bit 2 pre + post set where the pathway from type
// pre to type post (0 E, 1 I) has conductance synapses; event_capacity: the events' slots per member, 0 for
// none), then the model constants
// (jaxfne/model/_params.py V_PEAK_MV and the padding-lane value of each padded array), then the
// observation modes.
#define JAXFNE_ATTRS(X)                                                                            \
  X(n_steps, int64_t, "int64") X(threads, int64_t, "int64") X(shared_w, bool, "bool")              \
  X(delay_steps, ffi::Span<const int64_t>, "int64[]") X(sample_index, ffi::Span<const int64_t>,    \
                                                          "int64[]")                               \
  X(sample_stride, int64_t, "int64") X(integrator, int64_t, "int64") X(noise_hold, int64_t, "int64") \
  X(conductance, int64_t, "int64") X(event_capacity, int64_t, "int64") X(v_peak, double, "float64")   \
  X(pad_v, double, "float64")                                                                      \
  X(pad_u, double, "float64") X(pad_s_exc, double, "float64") X(pad_s_inh, double, "float64")      \
  X(pad_a, double, "float64") X(pad_b, double, "float64") X(pad_c, double, "float64")              \
  X(pad_d, double, "float64") X(pad_i_mean, double, "float64") X(pad_noise_scale, double, "float64") \
  X(pad_decay_exc, double, "float64") X(pad_decay_inh, double, "float64")

template <ffi::DataType DT>
struct KindFLOAT {
  static constexpr ffi::DataType dt = DT;
  static constexpr const char* label = "float";
};
template <ffi::DataType DT>
struct KindBOOL {
  static constexpr ffi::DataType dt = ffi::DataType::PRED;
  static constexpr const char* label = "bool";
};
template <ffi::DataType DT>
struct KindUINT32 {
  static constexpr ffi::DataType dt = ffi::DataType::U32;
  static constexpr const char* label = "uint32";
};
template <ffi::DataType DT>
struct KindINT32 {
  static constexpr ffi::DataType dt = ffi::DataType::S32;
  static constexpr const char* label = "int32";
};

constexpr int64_t kAbsent = 0, kFull = 1, kSampled = 2;     // values of the "<obs>_mode" attributes
constexpr int64_t kEuler = 0, kIzhikevich2003 = 1;          // values of the "integrator" attribute
#define JAXFNE_COUNT(NAME, KIND) +1
constexpr int kObs = 0 JAXFNE_OBS(JAXFNE_COUNT);

// The stimuli (jaxfne/model/_stimuli.py): stim_steps rows of kStimSteps uint32 (onset, span, period, width,
// Poisson threshold, Poisson sources, stream tag), stim_wave rows of kStimWave (amplitude or weight,
// offset, omega, phase, kind code: 0 current, 1 sine, 2 Poisson E, 3 Poisson I, 4 array). An array
// stimulus reads the member's stim_table (R, N; shared by every member unless per_member=True): row
// first + k / hold (first: its Poisson-sources column, hold: its threshold column), clamped to R - 1 as
// the XLA step clamps it.
// A trials stimulus lists its own onsets in stim_onsets (O per stimulus, kUnbounded after its last and for
// every other stimulus): it is on while onset_j <= t < onset_j + width for some j (_step.stimulus_gate).
constexpr int64_t kStimSteps = 7, kStimWave = 5;
constexpr double kArrayCode = 4.0;
constexpr uint32_t kUnbounded = 0xFFFFFFFFu;

// Whether a stimulus (its stim_steps row, its O listed onsets) is on at step t; *k_out: the steps since
// its onset (uint32, wrapping below it), as _step.stimulus_gate.
inline bool stimulus_on(const uint32_t* row, const uint32_t* listed, const int64_t O, const uint32_t t,
                        uint32_t* k_out) {
  const uint32_t onset = row[0], span = row[1], period = row[2], width = row[3];
  const uint32_t k = t - onset;   // wraps below onset: masked by t >= onset
  *k_out = k;
  if (O > 0 && listed[0] != kUnbounded) {   // a trials stimulus: on within width steps of a listed onset
    bool in_trial = false;
    for (int64_t j = 0; j < O; ++j) in_trial = in_trial || (t >= listed[j] && t - listed[j] < width);
    return in_trial;
  }
  return t >= onset && k < span && k % period < width;
}

// The stimuli's current at global step t (_step.stimulus_current): each stimulus's gate in uint32 step
// arithmetic, its value amplitude or, for a sine, amplitude * sin(omega * k + phase) + offset (k steps
// since onset; 0 for a Poisson source; for an array stimulus that is on, amplitude * its table row,
// neuron by neuron), and the currents summed over the stimuli in name order into istim (NP lanes; the
// padding lanes have no targets, so they stay 0). table: the member's stim_table (R, N), R = 0 without
// array stimuli or Poisson profiles. onsets: the member's stim_onsets (S, O), O = 0 without trials.
template <typename T>
void stimulus_current(const int64_t N, const int64_t NP, const int64_t S, const uint32_t t, const uint32_t* steps,
                      const T* wave, const T* target, const T* table, const int64_t R, const uint32_t* onsets,
                      const int64_t O, T* __restrict istim) {
  for (int64_t s = 0; s < S; ++s) {
    uint32_t k;
    const uint32_t* st = steps + kStimSteps * s;
    const bool on = stimulus_on(st, onsets + s * O, O, t, &k);
    const T* w = wave + kStimWave * s;
    const T amp = w[0], offset = w[1], omega = w[2], phase = w[3], code = w[4];
    const T value = on && code < T(2) ? (code == T(1) ? amp * std::sin(omega * static_cast<T>(k) + phase) + offset
                                                       : amp)
                                      : T(0);
    const T* __restrict row = target + s * NP;
    if (R > 0 && on && code == T(kArrayCode)) {   // target * (amplitude * table row), as _step.stimulus_current
      const uint32_t hold = std::max<uint32_t>(st[4], 1u);
      const uint32_t r = std::min<uint32_t>(st[5] + k / hold, static_cast<uint32_t>(R - 1));   // uint32, as XLA
      const T* __restrict trow = table + static_cast<int64_t>(r) * N;
      if (s == 0) {
        for (int64_t i = 0; i < N; ++i) istim[i] = row[i] * (amp * trow[i]);
        for (int64_t i = N; i < NP; ++i) istim[i] = T(0);
      } else {
        for (int64_t i = 0; i < N; ++i) istim[i] = istim[i] + row[i] * (amp * trow[i]);
      }
      continue;
    }
    if (s == 0) {
      for (int64_t i = 0; i < NP; ++i) istim[i] = row[i] * value;
    } else {
      for (int64_t i = 0; i < NP; ++i) istim[i] = istim[i] + row[i] * value;
    }
  }
}

// The Poisson sources' input at global step t (_step.poisson_input): for each Poisson stimulus that is on,
// Binomial(n_sources, threshold / 2^24) spikes per target from integer hashes of the member's stim_key
// stream, weight * count on its targets, summed in name order into pe (excitatory) or pi (inhibitory).
// An inhomogeneous source (stim_wave columns 1 and 2: its profile's first row of the shared table (R, N)
// and the steps per row, > 0) draws neuron i with threshold floor(threshold * factor_i + 0.5), factor_i
// the current row's value, in the run's dtype; the row index in uint32, clamped to R - 1 (as XLA).
// Sources are only the Poisson kinds (codes 2 and 3): an array stimulus (code 4) keeps other numbers
// in those columns.
template <typename T>
void poisson_input(const int64_t N, const int64_t NP, const int64_t S, const uint32_t t, const uint32_t* steps,
                   const T* wave, const T* target, const T* table, const int64_t R, const uint32_t* onsets,
                   const int64_t O, const uint32_t* nc, const uint32_t k0, const uint32_t k1, T* __restrict pe,
                   T* __restrict pi) {
  std::fill(pe, pe + N, T(0));
  std::fill(pi, pi + N, T(0));
  const uint32_t step_word = mix32(mix32(k0 ^ t) + k1);
  for (int64_t s = 0; s < S; ++s) {
    uint32_t k;
    const uint32_t* row = steps + kStimSteps * s;
    const T* w = wave + kStimWave * s;
    if (!(stimulus_on(row, onsets + s * O, O, t, &k) && (w[4] == T(2) || w[4] == T(3)))) continue;
    const uint32_t threshold = row[4], n_draws = row[5];
    const uint32_t word = mix32(step_word ^ row[6]);
    const T weight = w[0];
    const T* __restrict trow = target + s * NP;
    T* __restrict dst = w[4] == T(2) ? pe : pi;
    const T* __restrict factor = nullptr;      // the profile's current row, or none (a constant rate)
    if (R > 0 && w[2] > T(0)) {
      const uint32_t hold = std::max<uint32_t>(static_cast<uint32_t>(w[2]), 1u);
      const uint32_t r = std::min<uint32_t>(static_cast<uint32_t>(w[1]) + k / hold, static_cast<uint32_t>(R - 1));
      factor = table + static_cast<int64_t>(r) * N;
    }
    const T base_t = static_cast<T>(threshold);
    for (int64_t i = 0; i < N; ++i) {
      const uint32_t base = mix32(word ^ nc[i]);
      const uint32_t thr = factor ? static_cast<uint32_t>(std::floor(base_t * factor[i] + T(0.5))) : threshold;
      uint32_t count = 0;
      for (uint32_t j = 0; j < n_draws; ++j) count += (mix32(base + j * 0x9E3779B9u) >> 8) < thr ? 1u : 0u;
      dst[i] = dst[i] + trow[i] * (weight * static_cast<T>(count));
    }
  }
}

// One Euler step of every neuron of one network (the vectorised inner loop),
// over NP lanes (N rounded up to the vector width; the padding lanes sit at a
// fixed point and are never read back). The synaptic currents decay here; the
// input of this step's spikes is added afterwards. Writes the step's raw
// observations (obs_v: v at the end of the step shown at the peak when it crossed;
// the new u is u itself; obs_i_syn: s_exc - s_inh that drove the step) and
// returns the spike count. kStim: add the stimuli's current istim last (as _step.step). k2003: the
// Izhikevich (2003) scheme (v by two half steps of dt / 2 with the same input, then u by dt from the new
// v), each operation in _step.step's order; otherwise forward Euler. kCond: some pathway has conductance
// synapses; lane i's excitatory (inhibitory) current is then s_exc (rev_e - v) where ge[i] (gi[i]) is 1,
// s_exc (-s_inh) where it is 0, from the v at the start of the step, and i_syn their sum.
template <typename T, bool kStim, bool k2003, bool kCond>
int32_t update_neurons(const int64_t NP, const T* __restrict z, const T* __restrict istim, T* __restrict v,
                       T* __restrict u, T* __restrict se, T* __restrict si, const T* __restrict a,
                       const T* __restrict b, const T* __restrict c, const T* __restrict d,
                       const T* __restrict imean, const T* __restrict nscale, const T dt, const T* __restrict dexc,
                       const T* __restrict dinh, const T vpeak, const int32_t active, int32_t* __restrict spk,
                       T* __restrict obs_v, T* __restrict obs_i_syn, const T* __restrict ge,
                       const T* __restrict gi, const T rev_e, const T rev_i) {
  int32_t count = 0;
  for (int64_t i = 0; i < NP; ++i) {
    const T vi = v[i], ui = u[i];
    T isyn;
    if (kCond) {
      const T ie = ge[i] != T(0) ? se[i] * (rev_e - vi) : se[i];
      const T ii = gi[i] != T(0) ? si[i] * (rev_i - vi) : -si[i];
      isyn = ie + ii;
    } else {
      isyn = se[i] - si[i];
    }
    const T itot = kStim ? ((imean[i] + isyn) + nscale[i] * z[i]) + istim[i] : (imean[i] + isyn) + nscale[i] * z[i];
    T vn, un;
    if (k2003) {
      const T half = T(0.5) * dt;
      const T vh = vi + half * (((((T(0.04) * (vi * vi)) + T(5.0) * vi) + T(140.0)) - ui) + itot);
      vn = vh + half * (((((T(0.04) * (vh * vh)) + T(5.0) * vh) + T(140.0)) - ui) + itot);
      un = ui + dt * (a[i] * (b[i] * vn - ui));
    } else {
      vn = vi + dt * (((((T(0.04) * vi) * vi + T(5.0) * vi) + T(140.0)) - ui) + itot);
      un = ui + dt * (a[i] * (b[i] * vi - ui));
    }
    const bool crossed = vn >= vpeak;
    const int32_t fired = crossed ? active : 0;   // 32-bit flags keep the vector width of the floats
    spk[i] = fired;
    count += fired;
    obs_v[i] = crossed ? vpeak : vn;
    v[i] = crossed ? c[i] : vn;
    u[i] = crossed ? un + d[i] : un;
    obs_i_syn[i] = isyn;
    se[i] = se[i] * dexc[i];
    si[i] = si[i] * dinh[i];
  }
  return count;
}

template <ffi::DataType DT>
struct Batch {
  using T = ffi::NativeType<DT>;
  int64_t B, N, D, C, steps, K, stride, n_rows, S, R, O;
  int64_t table_stride;   // elements between two members' stim_table (0: one table shared by every member)
  bool shared_w, izh2003;
  int64_t conductance;   // bit 2 pre + post (0 E, 1 I): that pathway's synapses are conductances
  uint32_t noise_hold;
  int64_t t0;
  T v_peak;
  // the value of each padded array's padding lanes
  T pad_v, pad_u, pad_s_exc, pad_s_inh, pad_a, pad_b, pad_c, pad_d, pad_i_mean, pad_noise_scale, pad_decay_exc,
      pad_decay_inh;
  const int64_t *sample_index, *delays;
  // inputs and the state results, named as the declaration
#define JAXFNE_MEMBER(NAME, KIND) const ffi::NativeType<Kind##KIND<DT>::dt>* NAME;
#define JAXFNE_OUT_MEMBER(NAME, KIND) ffi::NativeType<Kind##KIND<DT>::dt>* NAME##_out;
  JAXFNE_STATE(JAXFNE_MEMBER)
  JAXFNE_PARAMS(JAXFNE_MEMBER)
  JAXFNE_STATE(JAXFNE_OUT_MEMBER)
#undef JAXFNE_MEMBER
#undef JAXFNE_OUT_MEMBER
  bool* spikes_out;       // nullptr: the raster is not written (events only)
  // the events (nullptr without them): neuron and step indices, one of each pair of pointers set
  int64_t event_capacity;
  uint16_t *ev_neuron16, *ev_step16;
  int32_t *ev_neuron32, *ev_step32, *ev_count;
  int64_t obs_mode[kObs];
  T* obs_out[kObs];       // in JAXFNE_OBS order; nullptr when absent
};

template <typename T>
void copy_if_distinct(T* dst, const T* src, int64_t n) {
  if (dst != src && n > 0) std::memcpy(dst, src, sizeof(T) * n);
}

constexpr int64_t kLanes = 16;   // pad the neuron axis to a multiple of this (one AVX-512 float vector)

// k2003: the integrator; kCond: some pathway has conductance synapses; both decided once per call
// (run_members below).
template <ffi::DataType DT, bool k2003, bool kCond>
void run_members_with(const Batch<DT>& q, int64_t m0, int64_t m1) {
  using T = ffi::NativeType<DT>;
  const int64_t N = q.N, D = q.D, C = q.C;
  const int64_t NP = (N + kLanes - 1) / kLanes * kLanes;
  const int64_t n_sampled = (q.steps + q.stride - 1) / q.stride;
  std::vector<uint32_t> ncount(NP);
  for (int64_t i = 0; i < NP; ++i) ncount[i] = mix32(static_cast<uint32_t>(i) * 2u + 1u);
  // the member's working copy, padded: lanes >= N rest at the declared padding values
  std::vector<T> v(NP), u(NP), se(NP), si(NP), a(NP), b(NP), c(NP), d(NP), imean(NP), nscale(NP);
  std::vector<T> dexc(NP), dinh(NP);   // per postsynaptic neuron: its pathway's synapse kind (0: delta)
  std::vector<T> ge(NP, T(0)), gi(NP, T(0));   // 1 where the E (I) pathway into the lane is a conductance
  std::vector<T> obs_v(NP), obs_i_syn(NP), acc_e(C * N, T(0)), acc_i(C * N, T(0));
  const int64_t S = q.S;
  std::vector<T> stim_target(S * NP, T(0)), istim(NP, T(0)), poi_e(N), poi_i(N);   // padding lanes: no target
  std::vector<T>& obs_u = u;          // the raw observation u is u after the step (and its reset)
  std::vector<int32_t> spk_buf(NP);
  int32_t* spk = spk_buf.data();
  std::vector<int32_t> fired(N);
  constexpr int64_t kBlock = 8;             // steps of noise computed ahead
  std::vector<T> zbuf(kBlock * NP);
  uint32_t words[kBlock];
  auto load = [&](std::vector<T>& dst, const T* from, T pad) {
    std::memcpy(dst.data(), from, sizeof(T) * N);
    std::fill(dst.begin() + N, dst.end(), pad);
  };
#define JAXFNE_OBS_NOW(NAME, KIND) obs_##NAME.data(),
  const T* const obs_now[kObs] = {JAXFNE_OBS(JAXFNE_OBS_NOW)};
#undef JAXFNE_OBS_NOW
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t o = m * N;
    load(v, q.v + o, q.pad_v);
    load(u, q.u + o, q.pad_u);
    load(se, q.s_exc + o, q.pad_s_exc);
    load(si, q.s_inh + o, q.pad_s_inh);
    load(a, q.a + o, q.pad_a);
    load(b, q.b + o, q.pad_b);
    load(c, q.c + o, q.pad_c);
    load(d, q.d + o, q.pad_d);
    load(imean, q.i_mean + o, q.pad_i_mean);
    load(nscale, q.noise_scale + o, q.pad_noise_scale);
    load(dexc, q.decay_exc + o, q.pad_decay_exc);
    load(dinh, q.decay_inh + o, q.pad_decay_inh);
    T* pe = q.pend_exc_out + m * D * N;
    T* pi = q.pend_inh_out + m * D * N;
    copy_if_distinct(pe, q.pend_exc + m * D * N, D * N);
    copy_if_distinct(pi, q.pend_inh + m * D * N, D * N);
    const bool* is_exc = q.is_exc + o;
    if (kCond) {     // bit 2 pre + post of q.conductance (pre, post: 0 E, 1 I); padding lanes: current
      for (int64_t i = 0; i < N; ++i) {
        const int post = is_exc[i] ? 0 : 1;
        ge[i] = (q.conductance >> post) & 1 ? T(1) : T(0);
        gi[i] = (q.conductance >> (2 + post)) & 1 ? T(1) : T(0);
      }
    }
    const T rev_e = q.rev_exc[m], rev_i = q.rev_inh[m];
    const T dt = q.dt_ms[m];
    const bool active = q.active[m];
    const uint32_t k0 = q.noise_key[2 * m], k1 = q.noise_key[2 * m + 1];
    const T* wm = q.shared_w ? q.w : q.w + m * C * q.n_rows * N;
    for (int64_t s = 0; s < S; ++s)
      std::memcpy(stim_target.data() + s * NP, q.stim_target + (m * S + s) * N, sizeof(T) * N);
    const uint32_t* stim_steps = q.stim_steps + m * S * kStimSteps;
    const uint32_t* stim_onsets = q.stim_onsets + m * S * q.O;
    const T* stim_table = q.stim_table + m * q.table_stride;
    const T* stim_wave = q.stim_wave + m * S * kStimWave;
    const uint32_t sk0 = q.stim_key[2 * m], sk1 = q.stim_key[2 * m + 1];
    int64_t n_events = 0;    // the member's spikes so far in this chunk (its events: the first event_capacity)
    for (int64_t k = 0; k < q.steps; ++k) {
      const uint64_t t = static_cast<uint64_t>(q.t0 + k);
      if (k % kBlock == 0) {
        const int64_t nb = std::min<int64_t>(kBlock, q.steps - k);
        for (int64_t j = 0; j < nb; ++j) {    // held noise: step t draws the sample of step t / noise_hold
          const uint32_t tj = static_cast<uint32_t>(t + j);
          words[j] = mix32(mix32(k0 ^ (q.noise_hold == 1 ? tj : tj / q.noise_hold)) + k1);
        }
        noise_block<T>(NP, nb, words, ncount.data(), zbuf.data());
      }
      const T* zk = zbuf.data() + (k % kBlock) * NP;
      int32_t n_spikes;
      if (S > 0) {
        stimulus_current<T>(N, NP, S, static_cast<uint32_t>(t), stim_steps, stim_wave, stim_target.data(),
                            stim_table, q.R, stim_onsets, q.O, istim.data());
        n_spikes = update_neurons<T, true, k2003, kCond>(NP, zk, istim.data(), v.data(), u.data(), se.data(), si.data(), a.data(),
                                           b.data(), c.data(), d.data(), imean.data(), nscale.data(), dt, dexc.data(), dinh.data(),
                                           q.v_peak, active ? 1 : 0, spk, obs_v.data(), obs_i_syn.data(),
                                           ge.data(), gi.data(), rev_e, rev_i);
      } else {
        n_spikes = update_neurons<T, false, k2003, kCond>(NP, zk, istim.data(), v.data(), u.data(), se.data(), si.data(), a.data(),
                                            b.data(), c.data(), d.data(), imean.data(), nscale.data(), dt, dexc.data(), dinh.data(),
                                            q.v_peak, active ? 1 : 0, spk, obs_v.data(), obs_i_syn.data(),
                                            ge.data(), gi.data(), rev_e, rev_i);
      }
      if (q.spikes_out != nullptr) {
        bool* __restrict spk_row = q.spikes_out + (m * q.steps + k) * N;
        for (int64_t i = 0; i < N; ++i) spk_row[i] = spk[i] != 0;
      }
      for (int j = 0; j < kObs; ++j) {
        if (q.obs_mode[j] == kFull) {
          std::memcpy(q.obs_out[j] + (m * q.steps + k) * N, obs_now[j], sizeof(T) * N);
        } else if (q.obs_mode[j] == kSampled && k % q.stride == 0) {
          T* __restrict row = q.obs_out[j] + (m * n_sampled + k / q.stride) * q.K;
          const T* __restrict from = obs_now[j];
          for (int64_t s = 0; s < q.K; ++s) row[s] = from[q.sample_index[s]];
        }
      }
      if (n_spikes > 0) {
        // recurrent input: outgoing rows of the fired cells summed in ascending index order
        int64_t n_fired = 0;
        for (int64_t i = 0; i < N; ++i) {
          fired[n_fired] = static_cast<int32_t>(i);
          n_fired += spk[i] ? 1 : 0;
        }
        if (q.ev_count != nullptr) {   // the events: this step's fired cells, ascending, while there is room
          const int64_t room = std::max<int64_t>(0, std::min<int64_t>(n_fired, q.event_capacity - n_events));
          const int64_t at = m * q.event_capacity + n_events;
          for (int64_t f = 0; f < room; ++f) {
            if (q.ev_neuron16) q.ev_neuron16[at + f] = static_cast<uint16_t>(fired[f]);
            else q.ev_neuron32[at + f] = fired[f];
            if (q.ev_step16) q.ev_step16[at + f] = static_cast<uint16_t>(k);
            else q.ev_step32[at + f] = static_cast<int32_t>(k);
          }
          n_events += n_fired;
        }
        for (int64_t f = 0; f < n_fired; ++f) {
          const int64_t j = fired[f];
          T* acc = is_exc[j] ? acc_e.data() : acc_i.data();
          for (int64_t cl = 0; cl < C; ++cl) {
            const T* __restrict row = wm + (cl * q.n_rows + j) * N;
            T* __restrict dst = acc + cl * N;
            for (int64_t i = 0; i < N; ++i) dst[i] += row[i];
          }
        }
        if (D == 0) {   // s <- s decay + increments (the decay was applied above)
          for (int64_t i = 0; i < N; ++i) {
            se[i] += acc_e[i];
            si[i] += acc_i[i];
          }
        } else {       // schedule each class's increments d steps ahead
          for (int64_t cl = 0; cl < C; ++cl) {
            const int64_t slot = static_cast<int64_t>((t + static_cast<uint64_t>(q.delays[cl]) - 1) % D);
            T* __restrict dpe = pe + slot * N;
            T* __restrict dpi = pi + slot * N;
            const T* __restrict ae = acc_e.data() + cl * N;
            const T* __restrict ai = acc_i.data() + cl * N;
            for (int64_t i = 0; i < N; ++i) {
              dpe[i] += ae[i];
              dpi[i] += ai[i];
            }
          }
        }
        std::fill(acc_e.begin(), acc_e.end(), T(0));
        std::fill(acc_i.begin(), acc_i.end(), T(0));
      }
      if (D > 0) {     // take out what arrives now
        const int64_t now = static_cast<int64_t>(t % D);
        T* __restrict ne = pe + now * N;
        T* __restrict ni = pi + now * N;
        for (int64_t i = 0; i < N; ++i) {
          se[i] += ne[i];
          si[i] += ni[i];
          ne[i] = T(0);
          ni[i] = T(0);
        }
      }
      if (S > 0) {     // the Poisson sources' spikes join after the recurrent input
        poisson_input<T>(N, NP, S, static_cast<uint32_t>(t), stim_steps, stim_wave, stim_target.data(),
                         stim_table, q.R, stim_onsets, q.O, ncount.data(), sk0, sk1, poi_e.data(), poi_i.data());
        for (int64_t i = 0; i < N; ++i) {
          se[i] = se[i] + poi_e[i];
          si[i] = si[i] + poi_i[i];
        }
      }
    }
    if (q.ev_count != nullptr) {   // the true count (an overflow shows as count > capacity); unused slots 0
      q.ev_count[m] = static_cast<int32_t>(n_events);
      const int64_t used = std::min<int64_t>(n_events, q.event_capacity), rest = q.event_capacity - used;
      const int64_t at = m * q.event_capacity + used;
      if (q.ev_neuron16) std::fill(q.ev_neuron16 + at, q.ev_neuron16 + at + rest, uint16_t{0});
      else std::fill(q.ev_neuron32 + at, q.ev_neuron32 + at + rest, int32_t{0});
      if (q.ev_step16) std::fill(q.ev_step16 + at, q.ev_step16 + at + rest, uint16_t{0});
      else std::fill(q.ev_step32 + at, q.ev_step32 + at + rest, int32_t{0});
    }
    std::memcpy(q.v_out + o, v.data(), sizeof(T) * N);
    std::memcpy(q.u_out + o, u.data(), sizeof(T) * N);
    std::memcpy(q.s_exc_out + o, se.data(), sizeof(T) * N);
    std::memcpy(q.s_inh_out + o, si.data(), sizeof(T) * N);
  }
}

template <ffi::DataType DT>
void run_members(const Batch<DT>& q, int64_t m0, int64_t m1) {
  const bool cond = q.conductance != 0;
  if (q.izh2003) {
    cond ? run_members_with<DT, true, true>(q, m0, m1) : run_members_with<DT, true, false>(q, m0, m1);
  } else {
    cond ? run_members_with<DT, false, true>(q, m0, m1) : run_members_with<DT, false, false>(q, m0, m1);
  }
}

// The results are fresh memory on every call (XLA allocates them; large blocks come straight from
// mmap), so the kernel's first writes fault in every 4 KiB page: ~12,500 faults for the 51 MB raster
// of 1024 members x 500 steps, about a fifth of the chunk's time on a 2-core machine (bench/NOTES.md).
// Transparent huge pages, where the system offers them on request (madvise mode), take 2 MiB per
// fault. Advice only: memory already touched, small results, failure or other systems change nothing.
void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (p == nullptr || bytes < 2 * kHuge) return;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}


bool dims_are(ffi::Span<const int64_t> dims, std::initializer_list<int64_t> want) {
  if (dims.size() != want.size()) return false;
  size_t i = 0;
  for (const int64_t x : want)
    if (dims[i++] != x) return false;
  return true;
}

std::string dims_text(ffi::Span<const int64_t> dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

ffi::Error bad(const std::string& why) { return ffi::Error::InvalidArgument("jaxfne native engine: " + why); }

#define JAXFNE_IN_PARAM(NAME, KIND) ffi::Buffer<Kind##KIND<DT>::dt> NAME,
#define JAXFNE_RET_PARAM(NAME, KIND) ffi::ResultBuffer<Kind##KIND<DT>::dt> NAME##_out,
#define JAXFNE_ATTR_PARAM(NAME, TYPE, LABEL) TYPE NAME,
#define JAXFNE_MODE_PARAM(NAME, KIND) int64_t NAME##_mode,

template <ffi::DataType DT>
ffi::Error chunk_impl(JAXFNE_STATE(JAXFNE_IN_PARAM) JAXFNE_PARAMS(JAXFNE_IN_PARAM) JAXFNE_CALL_ARGS(JAXFNE_IN_PARAM)
                      JAXFNE_STATE(JAXFNE_RET_PARAM) ffi::ResultBuffer<ffi::DataType::PRED> spikes_out,
                      JAXFNE_ATTRS(JAXFNE_ATTR_PARAM) JAXFNE_OBS(JAXFNE_MODE_PARAM) ffi::RemainingRets obs) {
  using T = ffi::NativeType<DT>;
  Batch<DT> q{};
  auto vd = v.dimensions();
  if (vd.size() != 2) return bad("v must be (members, neurons), got " + dims_text(vd));
  const int64_t B = vd[0], N = vd[1];
  auto pd = pend_exc.dimensions();
  if (pd.size() != 3) return bad("pend_exc must be (members, delay slots, neurons), got " + dims_text(pd));
  const int64_t D = pd[1], C = static_cast<int64_t>(delay_steps.size());
  auto sd = stim_target.dimensions();
  if (sd.size() != 3) return bad("stim_target must be (members, stimuli, neurons), got " + dims_text(sd));
  const int64_t S = sd[1];
  auto td = stim_table.dimensions();
  if (td.size() != 2 && td.size() != 3)
    return bad("stim_table must be (rows, neurons), shared by every member, or (members, rows, neurons), got " +
               dims_text(td));
  const bool table_per_member = td.size() == 3;   // an array stimulus with per_member=True
  const int64_t R = td[td.size() - 2];
  if (R > (int64_t{1} << 32)) return bad("stim_table has more rows than a uint32 step index reaches");
  auto od = stim_onsets.dimensions();
  if (od.size() != 3) return bad("stim_onsets must be (members, stimuli, onsets), got " + dims_text(od));
  const int64_t O = od[2];
  if (conductance < 0 || conductance > 15)
    return bad("conductance must be a 4-bit mask (bit 2 pre + post), got " + std::to_string(conductance));
  if (n_steps < 0 || sample_stride < 1) return bad("n_steps must be >= 0 and sample_stride >= 1");
  if (integrator != kEuler && integrator != kIzhikevich2003)
    return bad("integrator must be 0 (Euler) or 1 (Izhikevich 2003), got " + std::to_string(integrator));
  if (noise_hold < 1 || noise_hold > int64_t{0xFFFFFFFF})
    return bad("noise_hold must be a step count in [1, 2^32), got " + std::to_string(noise_hold));
  if (event_capacity < 0 || event_capacity > (int64_t{1} << 31) - 1)
    return bad("event_capacity must be in [0, 2^31) (0: no events), got " + std::to_string(event_capacity));
  if (event_capacity > 0 && n_steps * N > (int64_t{1} << 31) - 1)
    return bad("events need n_steps * neurons < 2^31 (an int32 count), got " + std::to_string(n_steps * N));
  // the raster: (B, n_steps, N), or (B, 0, N) (not written) when the events are asked for
  const bool raster = !(event_capacity > 0 && n_steps > 0 && dims_are(spikes_out->dimensions(), {B, 0, N}));
  const int64_t K = static_cast<int64_t>(sample_index.size());
  const int64_t n_sampled = (n_steps + sample_stride - 1) / sample_stride;
  // every buffer's shape, by name (dtypes and the order were checked by the typed binding)
  struct Shape {
    const char* name;
    ffi::Span<const int64_t> dims;
    std::vector<int64_t> want;
  };
  const Shape shapes[] = {
      {"u", u.dimensions(), {B, N}}, {"s_exc", s_exc.dimensions(), {B, N}}, {"s_inh", s_inh.dimensions(), {B, N}},
      {"pend_inh", pend_inh.dimensions(), {B, D, N}}, {"a", a.dimensions(), {B, N}}, {"b", b.dimensions(), {B, N}},
      {"c", c.dimensions(), {B, N}}, {"d", d.dimensions(), {B, N}}, {"is_exc", is_exc.dimensions(), {B, N}},
      {"w", w.dimensions(), shared_w ? std::vector<int64_t>{C, N + 1, N} : std::vector<int64_t>{B, C, N + 1, N}},
      {"i_mean", i_mean.dimensions(), {B, N}}, {"noise_scale", noise_scale.dimensions(), {B, N}},
      {"decay_exc", decay_exc.dimensions(), {B, N}}, {"decay_inh", decay_inh.dimensions(), {B, N}},
      {"dt_ms", dt_ms.dimensions(), {B}}, {"noise_key", noise_key.dimensions(), {B, 2}},
      {"active", active.dimensions(), {B}}, {"t0", t0.dimensions(), {}},
      {"stim_target", stim_target.dimensions(), {B, S, N}},
      {"stim_steps", stim_steps.dimensions(), {B, S, kStimSteps}},
      {"stim_wave", stim_wave.dimensions(), {B, S, kStimWave}}, {"stim_key", stim_key.dimensions(), {B, 2}},
      {"stim_table", stim_table.dimensions(),
       table_per_member ? std::vector<int64_t>{B, R, N} : std::vector<int64_t>{R, N}},
      {"rev_exc", rev_exc.dimensions(), {B}},
      {"rev_inh", rev_inh.dimensions(), {B}}, {"stim_onsets", stim_onsets.dimensions(), {B, S, O}},
      {"the v result", v_out->dimensions(), {B, N}}, {"the u result", u_out->dimensions(), {B, N}},
      {"the s_exc result", s_exc_out->dimensions(), {B, N}}, {"the s_inh result", s_inh_out->dimensions(), {B, N}},
      {"the pend_exc result", pend_exc_out->dimensions(), {B, D, N}},
      {"the pend_inh result", pend_inh_out->dimensions(), {B, D, N}},
      {"the spikes result", spikes_out->dimensions(), {B, raster ? n_steps : 0, N}},
  };
  for (const Shape& x : shapes)
    if (x.dims.size() != x.want.size() || !std::equal(x.want.begin(), x.want.end(), x.dims.begin()))
      return bad(std::string(x.name) + " has shape " + dims_text(x.dims) + ", expected " +
                 dims_text(ffi::Span<const int64_t>(x.want)));
  for (int64_t s = 0; s < K; ++s)
    if (sample_index[s] < 0 || sample_index[s] >= N) return bad("sample_index out of range");
  for (int64_t cl = 0; cl < C; ++cl)
    if (D > 0 && (delay_steps[cl] < 1 || delay_steps[cl] > D)) return bad("delay_steps out of range");
  q.B = B;
  q.N = N;
  q.D = D;
  q.C = C;
  q.K = K;
  q.n_rows = N + 1;
  q.S = S;
  q.R = R;
  q.table_stride = table_per_member ? R * N : 0;
  q.O = O;
  q.conductance = conductance;
  q.izh2003 = integrator == kIzhikevich2003;
  q.noise_hold = static_cast<uint32_t>(noise_hold);
  q.steps = n_steps;
  q.stride = sample_stride;
  q.shared_w = shared_w;
  q.t0 = static_cast<int64_t>(*t0.typed_data());
  q.sample_index = sample_index.begin();
  q.delays = delay_steps.begin();
  q.v_peak = static_cast<T>(v_peak);
  q.pad_v = static_cast<T>(pad_v);
  q.pad_u = static_cast<T>(pad_u);
  q.pad_s_exc = static_cast<T>(pad_s_exc);
  q.pad_s_inh = static_cast<T>(pad_s_inh);
  q.pad_a = static_cast<T>(pad_a);
  q.pad_b = static_cast<T>(pad_b);
  q.pad_c = static_cast<T>(pad_c);
  q.pad_d = static_cast<T>(pad_d);
  q.pad_i_mean = static_cast<T>(pad_i_mean);
  q.pad_noise_scale = static_cast<T>(pad_noise_scale);
  q.pad_decay_exc = static_cast<T>(pad_decay_exc);
  q.pad_decay_inh = static_cast<T>(pad_decay_inh);
#define JAXFNE_SET_IN(NAME, KIND) q.NAME = NAME.typed_data();
#define JAXFNE_SET_OUT(NAME, KIND) q.NAME##_out = NAME##_out->typed_data();
  JAXFNE_STATE(JAXFNE_SET_IN)
  JAXFNE_PARAMS(JAXFNE_SET_IN)
  JAXFNE_STATE(JAXFNE_SET_OUT)
#undef JAXFNE_SET_IN
#undef JAXFNE_SET_OUT
  q.spikes_out = raster ? spikes_out->typed_data() : nullptr;
  if (raster) advise_huge_pages(spikes_out->untyped_data(), spikes_out->size_bytes());
  // the optional observations: present in JAXFNE_OBS order, as their modes say
#define JAXFNE_MODE_VALUE(NAME, KIND) NAME##_mode,
#define JAXFNE_OBS_NAME(NAME, KIND) #NAME,
  const int64_t modes[kObs] = {JAXFNE_OBS(JAXFNE_MODE_VALUE)};
  const char* const obs_names[kObs] = {JAXFNE_OBS(JAXFNE_OBS_NAME)};
#undef JAXFNE_MODE_VALUE
#undef JAXFNE_OBS_NAME
  size_t next = 0;
  for (int j = 0; j < kObs; ++j) {
    q.obs_mode[j] = modes[j];
    q.obs_out[j] = nullptr;
    if (modes[j] == kAbsent) continue;
    if (modes[j] != kFull && modes[j] != kSampled) return bad(std::string(obs_names[j]) + "_mode must be 0, 1 or 2");
    if (next >= obs.size()) return bad(std::string("no result for the observation ") + obs_names[j]);
    auto r = obs.get<ffi::Buffer<DT>>(next++);
    if (!r.has_value()) return bad(std::string("the result for ") + obs_names[j] + " is not a buffer of the run's dtype");
    auto dims = (*r)->dimensions();
    const bool ok = modes[j] == kFull ? dims_are(dims, {B, n_steps, N}) : dims_are(dims, {B, n_sampled, K});
    if (!ok) return bad(std::string("the result for ") + obs_names[j] + " has shape " + dims_text(dims));
    q.obs_out[j] = (*r)->typed_data();
    advise_huge_pages((*r)->untyped_data(), (*r)->size_bytes());
  }
  q.event_capacity = event_capacity;
  q.ev_neuron16 = q.ev_step16 = nullptr;
  q.ev_neuron32 = q.ev_step32 = q.ev_count = nullptr;
  if (event_capacity > 0) {   // the events' three results, after the observations
    if (next + 3 > obs.size()) return bad("event_capacity > 0 but no results for the events (neuron, step, count)");
    const ffi::DataType n_dt = N <= 65536 ? ffi::DataType::U16 : ffi::DataType::S32;
    const ffi::DataType s_dt = n_steps <= 65536 ? ffi::DataType::U16 : ffi::DataType::S32;
    const char* const names[3] = {"neuron", "step", "count"};
    const ffi::DataType want[3] = {n_dt, s_dt, ffi::DataType::S32};
    void* data[3];
    for (int j = 0; j < 3; ++j) {
      auto r = obs.get<ffi::AnyBuffer>(next++);
      if (!r.has_value()) return bad(std::string("the events' ") + names[j] + " result is not a buffer");
      const auto dims = (*r)->dimensions();
      const bool shape_ok = j < 2 ? dims_are(dims, {B, event_capacity}) : dims_are(dims, {B});
      if ((*r)->element_type() != want[j] || !shape_ok)
        return bad(std::string("the events' ") + names[j] + " result has shape " + dims_text((*r)->dimensions()) +
                   " or the wrong dtype; expected (members" + (j < 2 ? ", event_capacity)" : ",)") +
                   (want[j] == ffi::DataType::U16 ? " uint16" : " int32"));
      data[j] = (*r)->untyped_data();
    }
    if (n_dt == ffi::DataType::U16) q.ev_neuron16 = static_cast<uint16_t*>(data[0]);
    else q.ev_neuron32 = static_cast<int32_t*>(data[0]);
    if (s_dt == ffi::DataType::U16) q.ev_step16 = static_cast<uint16_t*>(data[1]);
    else q.ev_step32 = static_cast<int32_t*>(data[1]);
    q.ev_count = static_cast<int32_t*>(data[2]);
  }
  if (next != obs.size()) return bad("more results than the observation modes and the events ask for");
  const int64_t n_threads = std::max<int64_t>(1, std::min<int64_t>(threads, q.B));
  if (n_threads == 1) {
    run_members(q, 0, q.B);
  } else {
    // members handed out in small blocks as threads ask for them: a thread slowed by another process
    // (the store's writer, say) takes fewer blocks instead of holding the others up. Members are
    // independent, so the results do not depend on which thread ran which member.
    constexpr int64_t kMembersPerTake = 8;
    std::atomic<int64_t> next_member{0};
    auto worker = [&q, &next_member] {
      for (int64_t lo = next_member.fetch_add(kMembersPerTake); lo < q.B; lo = next_member.fetch_add(kMembersPerTake))
        run_members(q, lo, std::min(q.B, lo + kMembersPerTake));
    };
    std::vector<std::thread> pool;
    for (int64_t k = 0; k < n_threads; ++k) pool.emplace_back(worker);
    for (auto& th : pool) th.join();
  }
  return ffi::Error::Success();
}

// The typed binding, generated from the same lists as chunk_impl's parameters and the signature.
#define JAXFNE_BIND_ARG(NAME, KIND) .template Arg<ffi::Buffer<Kind##KIND<DT>::dt>>()
#define JAXFNE_BIND_RET(NAME, KIND) .template Ret<ffi::Buffer<Kind##KIND<DT>::dt>>()
#define JAXFNE_BIND_ATTR(NAME, TYPE, LABEL) .template Attr<TYPE>(#NAME)
#define JAXFNE_BIND_MODE(NAME, KIND) .template Attr<int64_t>(#NAME "_mode")

template <ffi::DataType DT>
auto binding() {
  return ffi::Ffi::Bind() JAXFNE_STATE(JAXFNE_BIND_ARG) JAXFNE_PARAMS(JAXFNE_BIND_ARG)
      JAXFNE_CALL_ARGS(JAXFNE_BIND_ARG) JAXFNE_STATE(JAXFNE_BIND_RET)
      .template Ret<ffi::Buffer<ffi::DataType::PRED>>() JAXFNE_ATTRS(JAXFNE_BIND_ATTR) JAXFNE_OBS(JAXFNE_BIND_MODE)
      .template RemainingRets();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxfneIzhChunkF32, chunk_impl<ffi::DataType::F32>, binding<ffi::DataType::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxfneIzhChunkF64, chunk_impl<ffi::DataType::F64>, binding<ffi::DataType::F64>());

// The call's signature, one line per entry: "arg NAME KIND" (inputs, in order), "ret NAME KIND" (the
// fixed results), "obs NAME KIND" (the optional results), "events NAME KIND" (the events' results, when
// event_capacity > 0; KIND "index": uint16 or int32 by size), "attr NAME TYPE". jaxfne/engine/_native.py
// compares it with the declaration when it loads the library.
extern "C" const char* jaxfne_kernel_signature() {
  static const std::string signature = [] {
    std::string s;
    auto line = [&s](const char* what, const char* name, const char* type) {
      s += std::string(what) + " " + name + " " + type + "\n";
    };
    constexpr ffi::DataType F = ffi::DataType::F32;   // the kinds do not depend on the float width
#define JAXFNE_SIG_ARG(NAME, KIND) line("arg", #NAME, Kind##KIND<F>::label);
#define JAXFNE_SIG_RET(NAME, KIND) line("ret", #NAME, Kind##KIND<F>::label);
#define JAXFNE_SIG_OBS(NAME, KIND) line("obs", #NAME, Kind##KIND<F>::label);
#define JAXFNE_SIG_ATTR(NAME, TYPE, LABEL) line("attr", #NAME, LABEL);
#define JAXFNE_SIG_MODE(NAME, KIND) line("attr", #NAME "_mode", "int64");
    JAXFNE_STATE(JAXFNE_SIG_ARG)
    JAXFNE_PARAMS(JAXFNE_SIG_ARG)
    JAXFNE_CALL_ARGS(JAXFNE_SIG_ARG)
    JAXFNE_STATE(JAXFNE_SIG_RET)
    line("ret", "spikes", "bool");
    JAXFNE_OBS(JAXFNE_SIG_OBS)
    line("events", "neuron", "index");   // after the observations when event_capacity > 0
    line("events", "step", "index");
    line("events", "count", "int32");
    JAXFNE_ATTRS(JAXFNE_SIG_ATTR)
    JAXFNE_OBS(JAXFNE_SIG_MODE)
    return s;
  }();
  return signature.c_str();
}

// plain C entry points for tests of the noise transform
extern "C" void jaxfne_std_normal_f32(const uint32_t* h, float* z, int64_t n) {
  for (int64_t i = 0; i < n; ++i) z[i] = std_normal(level_x<float>(h[i]));
}
extern "C" void jaxfne_std_normal_f64(const uint32_t* h, double* z, int64_t n) {
  for (int64_t i = 0; i < n; ++i) z[i] = std_normal(level_x<double>(h[i]));
}
extern "C" void jaxfne_log_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = log_f32(x[i]);
}
