// y = x W^T (+ b) for a few rows of x: small-batch decode, where the GEMM is a weight read.
//
// MKL's sgemm on a row-major [out, in] weight and oneDNN's on its blocked one reach only 55-75 %
// of the memory bandwidth for one or two rows (both are built for large M). Here the weight is
// streamed once: with AVX-512, two weight rows at a time against tiles of up to 8 rows of x (16
// accumulators, x staying in L1), the next rows prefetched; with AVX2 only, one weight row at a
// time. Accumulation is float32.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "simd.h"

namespace {

constexpr int64_t kMaxRows = 64;  // the dispatcher's limit is lower: where this beats MKL
constexpr int64_t kTile = 8;  // rows of x per pass over a weight row: 8 accumulators + 2 loads

// out[m] = x[m] . w for M <= kTile rows of x (floats, K each).
template <typename T>
inline void tile_dots(const float* x, int64_t M, const T* w, int64_t K, float* out) {
#if defined(__AVX2__) && defined(__FMA__)
  if (K % 8 == 0) {
    __m256 acc[kTile];
    for (int64_t m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
      const __m256 wv = load8(w + k);
      for (int64_t m = 0; m < M; ++m)
        acc[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * K + k), wv, acc[m]);
    }
    for (int64_t m = 0; m < M; ++m) out[m] = hsum(acc[m]);
    return;
  }
#endif
  for (int64_t m = 0; m < M; ++m) {
    float sum = 0.f;
    for (int64_t k = 0; k < K; ++k) sum += x[m * K + k] * static_cast<float>(w[k]);
    out[m] = sum;
  }
}

#if defined(__AVX512F__)
// out[m * 2 + j] = x[m] . w_j for weight rows w0, w1 and M rows of x; `ahead` is the weight row
// to prefetch (two rows later, in the next pass). M is a template argument so that the 2 x M
// accumulators live in registers (with a runtime M they spill, and every FMA waits on a store).
template <int M, typename T>
inline void pair_dots(const float* x, const T* w0, const T* w1, int64_t K, const T* ahead,
                      float* out) {
  __m512 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mask = K - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (K - k)) - 1);
    if (ahead) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + k), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + K + k), _MM_HINT_T0);
    }
    const __m512 a = load16(w0 + k, mask), b = load16(w1 + k, mask);
    for (int m = 0; m < M; ++m) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + m * K + k);
      acc0[m] = _mm512_fmadd_ps(xv, a, acc0[m]);
      acc1[m] = _mm512_fmadd_ps(xv, b, acc1[m]);
    }
  }
  for (int m = 0; m < M; ++m) {
    out[m * 2] = _mm512_reduce_add_ps(acc0[m]);
    out[m * 2 + 1] = _mm512_reduce_add_ps(acc1[m]);
  }
}

template <typename T>
inline void pair_tile(const float* x, int64_t M, const T* w0, const T* w1, int64_t K,
                      const T* ahead, float* out) {
  switch (M) {
    case 1: pair_dots<1>(x, w0, w1, K, ahead, out); break;
    case 2: pair_dots<2>(x, w0, w1, K, ahead, out); break;
    case 3: pair_dots<3>(x, w0, w1, K, ahead, out); break;
    case 4: pair_dots<4>(x, w0, w1, K, ahead, out); break;
    case 5: pair_dots<5>(x, w0, w1, K, ahead, out); break;
    case 6: pair_dots<6>(x, w0, w1, K, ahead, out); break;
    case 7: pair_dots<7>(x, w0, w1, K, ahead, out); break;
    default: pair_dots<8>(x, w0, w1, K, ahead, out); break;
  }
}
#endif

// Every row of x against one weight row: tiles of kTile rows, the weight row staying in L1.
template <typename T>
inline void row_dots(const float* x, int64_t M, const T* w, int64_t K, float* out) {
  for (int64_t m0 = 0; m0 < M; m0 += kTile)
    tile_dots(x + m0 * K, std::min(kTile, M - m0), w, K, out + m0);
}

template <typename T>
void run(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
         at::Tensor& y) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const float* xp = xf.data_ptr<float>();
  const T* wp = w.data_ptr<T>();
  const T* bp = bias ? bias->data_ptr<T>() : nullptr;
  T* yp = y.data_ptr<T>();
  // Chunks of 64 rows (~150 KB of a 576-wide fp32 weight): small enough to balance threads.
  at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
    float out[kMaxRows * 2];
    int64_t n = begin;
#if defined(__AVX512F__)
    for (; n + 2 <= end; n += 2) {
      const T* ahead = n + 4 <= end ? wp + (n + 2) * K : nullptr;
      for (int64_t m0 = 0; m0 < M; m0 += kTile)
        pair_tile(xp + m0 * K, std::min(kTile, M - m0), wp + n * K, wp + (n + 1) * K, K, ahead,
                  out + m0 * 2);
      const float b0 = bp ? static_cast<float>(bp[n]) : 0.f;
      const float b1 = bp ? static_cast<float>(bp[n + 1]) : 0.f;
      for (int64_t m = 0; m < M; ++m) {
        yp[m * N + n] = static_cast<T>(out[m * 2] + b0);
        yp[m * N + n + 1] = static_cast<T>(out[m * 2 + 1] + b1);
      }
    }
#endif
    for (; n < end; ++n) {
      row_dots(xp, M, wp + n * K, K, out);
      const float b = bp ? static_cast<float>(bp[n]) : 0.f;
      for (int64_t m = 0; m < M; ++m) yp[m * N + n] = static_cast<T>(out[m] + b);
    }
  });
}

at::Tensor skinny_gemm(const at::Tensor& x, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1),
              "skinny_gemm: x [M, K], weight [N, K]");
  TORCH_CHECK(x.size(0) <= kMaxRows, "skinny_gemm: at most ", kMaxRows, " rows");
  TORCH_CHECK(weight.is_contiguous() && x.scalar_type() == weight.scalar_type(),
              "skinny_gemm: contiguous weight of x's dtype");
  auto y = at::empty({x.size(0), weight.size(0)}, x.options());
  const auto b = bias ? c10::optional<at::Tensor>(bias->contiguous()) : c10::nullopt;
  switch (weight.scalar_type()) {
    case at::kFloat: run<float>(x, weight, b, y); break;
    case at::kBFloat16: run<c10::BFloat16>(x, weight, b, y); break;
    case at::kHalf: run<c10::Half>(x, weight, b, y); break;
    default: TORCH_CHECK(false, "skinny_gemm: float32, bfloat16 or float16 only");
  }
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(onenode, m) {
  m.def("skinny_gemm(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(onenode, CPU, m) { m.impl("skinny_gemm", &skinny_gemm); }
