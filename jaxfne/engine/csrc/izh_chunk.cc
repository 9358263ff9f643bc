// jaxfne native CPU engine: a batch of Izhikevich E/I networks advanced by a
// whole chunk of time steps in one XLA FFI call.
//
// The model is the one in jaxfne/engine/_step.py (forward Euler, exponential current
// synapses, event-driven recurrent input in ascending presynaptic index order,
// delay classes through ring buffers, the same counter-based noise stream).
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
// independent of the state, so computed ahead in a loop without dependencies.
template <typename T>
void noise_block(const int64_t NP, const int64_t steps, const uint32_t* s, const uint32_t* __restrict nc,
                 T* __restrict z) {
  for (int64_t k = 0; k < steps; ++k) {
    const uint32_t sk = s[k];
    T* __restrict zk = z + k * NP;
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

// One Euler step of every neuron of one network (the vectorised inner loop),
// over NP lanes (N rounded up to the vector width; the padding lanes sit at a
// fixed point and are never read back). The synaptic currents decay here; the
// input of this step's spikes is added afterwards. Returns the spike count.
template <typename T>
int32_t update_neurons(const int64_t NP, const T* __restrict z, T* __restrict v,
                       T* __restrict u, T* __restrict se, T* __restrict si, const T* __restrict a,
                       const T* __restrict b, const T* __restrict c, const T* __restrict d,
                       const T* __restrict imean, const T* __restrict nscale, const T dt, const T dexc,
                       const T dinh, const int32_t active, int32_t* __restrict spk, T* __restrict vo,
                       T* __restrict src) {
  int32_t count = 0;
  for (int64_t i = 0; i < NP; ++i) {
    const T vi = v[i], ui = u[i];
    const T isyn = se[i] - si[i];
    const T itot = (imean[i] + isyn) + nscale[i] * z[i];
    const T vn = vi + dt * (((((T(0.04) * vi) * vi + T(5.0) * vi) + T(140.0)) - ui) + itot);
    const T un = ui + dt * (a[i] * (b[i] * vi - ui));
    const bool crossed = vn >= T(30.0);
    const int32_t fired = crossed ? active : 0;   // 32-bit flags keep the vector width of the floats
    spk[i] = fired;
    count += fired;
    vo[i] = crossed ? T(30.0) : vn;
    v[i] = crossed ? c[i] : vn;
    u[i] = crossed ? un + d[i] : un;
    src[i] = isyn;
    se[i] = se[i] * dexc;
    si[i] = si[i] * dinh;
  }
  return count;
}

template <typename T>
struct Batch {
  int64_t B, N, D, C, steps, K, stride, n_rows;
  bool shared_w, want_vm, want_source;
  int64_t t0;
  // inputs
  const T *v, *u, *se, *si, *pe, *pi, *a, *b, *c, *d, *w, *imean, *nscale, *dexc, *dinh, *dt;
  const bool *is_exc, *active;
  const uint32_t* key;
  const int32_t *vm_idx, *delays;
  // outputs
  T *v_o, *u_o, *se_o, *si_o, *pe_o, *pi_o, *vm_o, *src_o;
  bool* spk_o;
};

template <typename T>
void copy_if_distinct(T* dst, const T* src, int64_t n) {
  if (dst != src && n > 0) std::memcpy(dst, src, sizeof(T) * n);
}

constexpr int64_t kLanes = 16;   // pad the neuron axis to a multiple of this (one AVX-512 float vector)

template <typename T>
void run_members(const Batch<T>& q, int64_t m0, int64_t m1) {
  const int64_t N = q.N, D = q.D, C = q.C;
  const int64_t NP = (N + kLanes - 1) / kLanes * kLanes;
  const int64_t n_vm = q.want_vm ? (q.steps + q.stride - 1) / q.stride : 0;
  std::vector<uint32_t> ncount(NP);
  for (int64_t i = 0; i < NP; ++i) ncount[i] = mix32(static_cast<uint32_t>(i) * 2u + 1u);
  // the member's working copy, padded: lanes >= N rest at v = -70, u = -14 with no drive
  std::vector<T> v(NP), u(NP), se(NP), si(NP), a(NP), b(NP), c(NP), d(NP), imean(NP), nscale(NP);
  std::vector<T> vobs(NP), src(NP), acc_e(C * N, T(0)), acc_i(C * N, T(0));
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
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t o = m * N;
    load(v, q.v + o, T(-70.0));
    load(u, q.u + o, T(-14.0));
    load(se, q.se + o, T(0));
    load(si, q.si + o, T(0));
    load(a, q.a + o, T(0));
    load(b, q.b + o, T(0));
    load(c, q.c + o, T(-70.0));
    load(d, q.d + o, T(0));
    load(imean, q.imean + o, T(0));
    load(nscale, q.nscale + o, T(0));
    T* pe = q.pe_o + m * D * N;
    T* pi = q.pi_o + m * D * N;
    copy_if_distinct(pe, q.pe + m * D * N, D * N);
    copy_if_distinct(pi, q.pi + m * D * N, D * N);
    const bool* is_exc = q.is_exc + o;
    const T dt = q.dt[m], dexc = q.dexc[m], dinh = q.dinh[m];
    const bool active = q.active[m];
    const uint32_t k0 = q.key[2 * m], k1 = q.key[2 * m + 1];
    const T* wm = q.shared_w ? q.w : q.w + m * C * q.n_rows * N;
    for (int64_t k = 0; k < q.steps; ++k) {
      const uint64_t t = static_cast<uint64_t>(q.t0 + k);
      if (k % kBlock == 0) {
        const int64_t nb = std::min<int64_t>(kBlock, q.steps - k);
        for (int64_t j = 0; j < nb; ++j) words[j] = mix32(mix32(k0 ^ static_cast<uint32_t>(t + j)) + k1);
        noise_block<T>(NP, nb, words, ncount.data(), zbuf.data());
      }
      const int32_t n_spikes = update_neurons<T>(NP, zbuf.data() + (k % kBlock) * NP, v.data(), u.data(), se.data(), si.data(),
                                                 a.data(), b.data(), c.data(), d.data(), imean.data(),
                                                 nscale.data(), dt, dexc, dinh, active ? 1 : 0, spk, vobs.data(), src.data());
      bool* __restrict spk_row = q.spk_o + (m * q.steps + k) * N;
      for (int64_t i = 0; i < N; ++i) spk_row[i] = spk[i] != 0;
      if (q.want_source) std::memcpy(q.src_o + (m * q.steps + k) * N, src.data(), sizeof(T) * N);
      if (q.want_vm && k % q.stride == 0) {
        T* row = q.vm_o + (m * n_vm + k / q.stride) * q.K;
        for (int64_t j = 0; j < q.K; ++j) row[j] = vobs[q.vm_idx[j]];
      }
      if (n_spikes > 0) {
        // recurrent input: outgoing rows of the fired cells summed in ascending index order
        int64_t n_fired = 0;
        for (int64_t i = 0; i < N; ++i) {
          fired[n_fired] = static_cast<int32_t>(i);
          n_fired += spk[i] ? 1 : 0;
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
    }
    std::memcpy(q.v_o + o, v.data(), sizeof(T) * N);
    std::memcpy(q.u_o + o, u.data(), sizeof(T) * N);
    std::memcpy(q.se_o + o, se.data(), sizeof(T) * N);
    std::memcpy(q.si_o + o, si.data(), sizeof(T) * N);
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

template <ffi::DataType DT>
ffi::Error chunk_impl(ffi::RemainingArgs args, ffi::RemainingRets rets, int64_t n_steps, int64_t stride,
                      bool shared_w, bool want_vm, bool want_source, int64_t threads) {
  using T = ffi::NativeType<DT>;
  if (args.size() != 22) return ffi::Error::InvalidArgument("jaxfne native engine: expected 22 arguments");
  std::vector<ffi::AnyBuffer> in;
  for (size_t i = 0; i < args.size(); ++i) {
    auto x = args.get<ffi::AnyBuffer>(i);
    if (!x.has_value()) return ffi::Error::InvalidArgument("jaxfne native engine: argument is not a buffer");
    in.push_back(*x);
  }
  std::vector<ffi::AnyBuffer> out;
  for (size_t i = 0; i < rets.size(); ++i) {
    auto x = rets.get<ffi::AnyBuffer>(i);
    if (!x.has_value()) return ffi::Error::InvalidArgument("jaxfne native engine: result is not a buffer");
    out.push_back(**x);
  }
  Batch<T> q{};
  auto vd = in[0].dimensions();
  if (vd.size() != 2) return ffi::Error::InvalidArgument("jaxfne native engine: v must be (members, neurons)");
  q.B = vd[0];
  q.N = vd[1];
  auto pd = in[4].dimensions();
  q.D = pd.size() == 3 ? pd[1] : 0;
  auto wd = in[11].dimensions();
  q.n_rows = wd[wd.size() - 2];
  q.C = in[21].element_count();
  q.K = in[20].element_count();
  q.steps = n_steps;
  q.stride = stride;
  q.shared_w = shared_w;
  q.want_vm = want_vm;
  q.want_source = want_source;
  q.t0 = static_cast<int64_t>(*reinterpret_cast<const int32_t*>(in[19].untyped_data()));
  if (q.n_rows != q.N + 1) return ffi::Error::InvalidArgument("jaxfne native engine: w must have N + 1 rows");
  auto P = [&](int i) { return reinterpret_cast<const T*>(in[i].untyped_data()); };
  q.v = P(0); q.u = P(1); q.se = P(2); q.si = P(3); q.pe = P(4); q.pi = P(5);
  q.a = P(6); q.b = P(7); q.c = P(8); q.d = P(9);
  q.is_exc = reinterpret_cast<const bool*>(in[10].untyped_data());
  q.w = P(11); q.imean = P(12); q.nscale = P(13); q.dexc = P(14); q.dinh = P(15); q.dt = P(16);
  q.key = reinterpret_cast<const uint32_t*>(in[17].untyped_data());
  q.active = reinterpret_cast<const bool*>(in[18].untyped_data());
  q.vm_idx = reinterpret_cast<const int32_t*>(in[20].untyped_data());
  q.delays = reinterpret_cast<const int32_t*>(in[21].untyped_data());
  auto R = [&](int i) { return reinterpret_cast<T*>(out[i].untyped_data()); };
  q.v_o = R(0); q.u_o = R(1); q.se_o = R(2); q.si_o = R(3); q.pe_o = R(4); q.pi_o = R(5);
  q.spk_o = reinterpret_cast<bool*>(out[6].untyped_data());
  size_t next = 7;
  q.vm_o = want_vm ? R(next++) : nullptr;
  q.src_o = want_source ? R(next++) : nullptr;
  if (next != out.size()) return ffi::Error::InvalidArgument("jaxfne native engine: unexpected number of results");
  for (int64_t j = 0; j < q.K; ++j)
    if (q.vm_idx[j] < 0 || q.vm_idx[j] >= q.N) return ffi::Error::InvalidArgument("jaxfne native engine: bad Vm index");
  for (size_t i = 6; i < out.size(); ++i) advise_huge_pages(out[i].untyped_data(), out[i].size_bytes());
  const int64_t n_threads = std::max<int64_t>(1, std::min<int64_t>(threads, q.B));
  if (n_threads == 1) {
    run_members(q, 0, q.B);
  } else {
    // members handed out in small blocks as threads ask for them: a thread slowed by another process
    // (the store's writer, say) takes fewer blocks instead of holding the others up. Members are
    // independent, so the results do not depend on which thread ran which member.
    constexpr int64_t kMembersPerTake = 8;
    std::atomic<int64_t> next{0};
    auto worker = [&q, &next] {
      for (int64_t lo = next.fetch_add(kMembersPerTake); lo < q.B; lo = next.fetch_add(kMembersPerTake))
        run_members(q, lo, std::min(q.B, lo + kMembersPerTake));
    };
    std::vector<std::thread> pool;
    for (int64_t k = 0; k < n_threads; ++k) pool.emplace_back(worker);
    for (auto& th : pool) th.join();
  }
  return ffi::Error::Success();
}

}  // namespace

#define JAXFNE_BIND(NAME, DT)                                                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, chunk_impl<DT>,                                      \
                                ffi::Ffi::Bind()                                           \
                                    .RemainingArgs()                                       \
                                    .RemainingRets()                                       \
                                    .Attr<int64_t>("n_steps")                              \
                                    .Attr<int64_t>("stride")                               \
                                    .Attr<bool>("shared_w")                                \
                                    .Attr<bool>("want_vm")                                 \
                                    .Attr<bool>("want_source")                             \
                                    .Attr<int64_t>("threads"));

JAXFNE_BIND(JaxfneIzhChunkF32, ffi::DataType::F32)
JAXFNE_BIND(JaxfneIzhChunkF64, ffi::DataType::F64)

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
