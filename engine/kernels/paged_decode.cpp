// Decode attention over the paged, head-major KV cache, reading K/V in place.
//
// One new query token per sequence. For each (sequence, KV head) the kernel walks the sequence's
// block table, so no sequence's context is ever copied or padded: the PyTorch fallback gathers
// every context into a padded batch per layer per step, which moves the whole KV cache through
// memory twice more than this. The query heads that share a KV head (GQA) are scored together
// while that key row is in cache. Softmax and the weighted sum of V accumulate in float32.
// A sliding window (window > 0) starts the walk at the window's first key, len - window (HF's
// rule, engine/layers/sliding_window.py): blocks wholly before it are never read.
// With AVX-512 (head_dim a multiple of 16, up to 8 query heads per KV head) one pass with an
// online softmax runs instead (paged_decode_avx512.h); the two passes below are the AVX2 and
// scalar paths.
//
// Shapes: q [n, heads, d]; k_cache/v_cache [kv_heads, num_blocks, block_size, d] (contiguous);
// block_tables [n, max_blocks] int64; seq_lens [n] int64 -> out [n, heads * d] (q's dtype).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "paged_decode_avx512.h"
#include "simd.h"

namespace {

#if defined(__AVX2__) && defined(__FMA__)
// exp for x <= 0 (softmax after subtracting the max): Cephes' polynomial, ~1 ulp.
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
                                              _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  for (float c : {1.3981999507E-3f, 8.3334519073E-3f, 4.1665795894E-2f, 1.6666665459E-1f,
                  5.0000001201E-1f})
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
  __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}
#endif

// scores[h] = q_h . k for the `g` query heads of one KV head (d a multiple of 8 on the SIMD path).
template <typename T>
inline void dots(const float* q, const T* k, int64_t g, int64_t d, float* scores, int64_t stride) {
#if defined(__AVX2__) && defined(__FMA__)
  if (d % 8 == 0 && g <= 8) {
    __m256 acc[8];
    for (int64_t h = 0; h < g; ++h) acc[h] = _mm256_setzero_ps();
    for (int64_t x = 0; x < d; x += 8) {
      const __m256 kv = load8(k + x);
      for (int64_t h = 0; h < g; ++h) acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * d + x), kv, acc[h]);
    }
    for (int64_t h = 0; h < g; ++h) scores[h * stride] = hsum(acc[h]);
    return;
  }
#endif
  for (int64_t h = 0; h < g; ++h) {
    float sum = 0.f;
    for (int64_t x = 0; x < d; ++x) sum += q[h * d + x] * static_cast<float>(k[x]);
    scores[h * stride] = sum;
  }
}

// acc_h += p_h * v for the `g` query heads.
template <typename T>
inline void axpys(float* acc, const float* p, const T* v, int64_t g, int64_t d, int64_t stride) {
#if defined(__AVX2__) && defined(__FMA__)
  if (d % 8 == 0) {
    for (int64_t x = 0; x < d; x += 8) {
      const __m256 vv = load8(v + x);
      for (int64_t h = 0; h < g; ++h) {
        float* a = acc + h * d + x;
        _mm256_storeu_ps(a, _mm256_fmadd_ps(_mm256_set1_ps(p[h * stride]), vv, _mm256_loadu_ps(a)));
      }
    }
    return;
  }
#endif
  for (int64_t h = 0; h < g; ++h)
    for (int64_t x = 0; x < d; ++x) acc[h * d + x] += p[h * stride] * static_cast<float>(v[x]);
}

// row[t] = exp(row[t] - max); returns the sum.
inline float exp_sum(float* row, int64_t len) {
  const float m = *std::max_element(row, row + len);
  float sum = 0.f;
  int64_t t = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 vs = _mm256_setzero_ps();
  const __m256 vm = _mm256_set1_ps(m);
  for (; t + 8 <= len; t += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + t), vm));
    _mm256_storeu_ps(row + t, e);
    vs = _mm256_add_ps(vs, e);
  }
  sum = hsum(vs);
#endif
  for (; t < len; ++t) sum += (row[t] = std::exp(row[t] - m));
  return sum;
}

// Blocks are scattered in the cache, so the hardware prefetcher stalls at every block edge:
// ask for the next block while this one is being read.
inline void prefetch_block(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 1);
}

struct Shape {
  int64_t heads, kv_heads, group, d, block_size, head_stride, table_width;
};

// One (sequence, KV head) pair: `group` query rows against the cached tokens [first, len).
template <typename T>
void attend(const T* q, const T* k, const T* v, const int64_t* table, int64_t first,
            int64_t len, const Shape& s, float scale, T* out, std::vector<float>& buf) {
  const int64_t g = s.group, d = s.d, bs = s.block_size, span = len - first;
#if defined(__AVX512F__)
  if (pd512::try_attend(q, k, v, pd512::Walk{table, first, len, bs, d}, g, scale, out, buf))
    return;
#endif
  buf.assign(g * d * 2 + g + g * span, 0.f);
  float* qf = buf.data();
  float* acc = qf + g * d;
  float* inv = acc + g * d;
  float* scores = inv + g;  // scores[h * span + (t - first)]
  for (int64_t i = 0; i < g * d; ++i) qf[i] = static_cast<float>(q[i]) * scale;
  for (int64_t t0 = first / bs * bs; t0 < len; t0 += bs) {
    const T* kb = k + table[t0 / bs] * bs * d;
    if (t0 + bs < len) prefetch_block(k + table[t0 / bs + 1] * bs * d, bs * d * sizeof(T));
    for (int64_t t = std::max(first, t0); t < std::min(len, t0 + bs); ++t)
      dots(qf, kb + (t - t0) * d, g, d, scores + (t - first), span);
  }
  for (int64_t h = 0; h < g; ++h) inv[h] = 1.f / exp_sum(scores + h * span, span);
  for (int64_t t0 = first / bs * bs; t0 < len; t0 += bs) {
    const T* vb = v + table[t0 / bs] * bs * d;
    if (t0 + bs < len) prefetch_block(v + table[t0 / bs + 1] * bs * d, bs * d * sizeof(T));
    for (int64_t t = std::max(first, t0); t < std::min(len, t0 + bs); ++t)
      axpys(acc, scores + (t - first), vb + (t - t0) * d, g, d, span);
  }
  for (int64_t h = 0; h < g; ++h)
    for (int64_t x = 0; x < d; ++x) out[h * d + x] = static_cast<T>(acc[h * d + x] * inv[h]);
}

template <typename T>
void run(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc,
         const at::Tensor& tables, const at::Tensor& lens, double scale, int64_t window,
         at::Tensor& out) {
  const int64_t n = q.size(0);
  Shape s{q.size(1), kc.size(0), q.size(1) / kc.size(0), q.size(2), kc.size(2),
          kc.size(1) * kc.size(2) * kc.size(3), tables.size(1)};
  const T* qp = q.data_ptr<T>();
  const T* kp = kc.data_ptr<T>();
  const T* vp = vc.data_ptr<T>();
  const int64_t* tp = tables.data_ptr<int64_t>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, n * s.kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t seq = i / s.kv_heads, kvh = i % s.kv_heads;
      const int64_t row = (seq * s.heads + kvh * s.group) * s.d;
      const int64_t first = window > 0 ? std::max<int64_t>(0, lp[seq] - window) : 0;
      attend<T>(qp + row, kp + kvh * s.head_stride, vp + kvh * s.head_stride,
                tp + seq * s.table_width, first, lp[seq], s, static_cast<float>(scale),
                op + row, buf);
    }
  });
}

at::Tensor paged_decode(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                        const at::Tensor& block_tables, const at::Tensor& seq_lens, double scale,
                        int64_t window) {
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes(),
              "paged_decode: q [n, heads, d], caches [kv_heads, blocks, block_size, d]");
  TORCH_CHECK(q.size(2) == k_cache.size(3) && q.size(1) % k_cache.size(0) == 0,
              "paged_decode: head_dim or head groups do not match the cache");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
  TORCH_CHECK(block_tables.scalar_type() == at::kLong && seq_lens.scalar_type() == at::kLong,
              "block_tables and seq_lens must be int64");
  TORCH_CHECK(k_cache.scalar_type() == q.scalar_type(), "q and cache dtypes differ");
  auto qc = q.contiguous();
  auto tables = block_tables.contiguous();
  auto lens = seq_lens.contiguous();
  auto out = at::empty({q.size(0), q.size(1) * q.size(2)}, q.options());
  TORCH_CHECK(window >= 0, "paged_decode: window must be >= 0 (0: no sliding window)");
  switch (q.scalar_type()) {
    case at::kFloat: run<float>(qc, k_cache, v_cache, tables, lens, scale, window, out); break;
    case at::kBFloat16:
      run<c10::BFloat16>(qc, k_cache, v_cache, tables, lens, scale, window, out);
      break;
    case at::kHalf: run<c10::Half>(qc, k_cache, v_cache, tables, lens, scale, window, out); break;
    default: TORCH_CHECK(false, "paged_decode: float32, bfloat16 or float16 only");
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(onenode, m) {
  m.def("paged_decode(Tensor q, Tensor k_cache, Tensor v_cache, Tensor block_tables, "
        "Tensor seq_lens, float scale, int window=0) -> Tensor");
}

TORCH_LIBRARY_IMPL(onenode, CPU, m) { m.impl("paged_decode", &paged_decode); }
