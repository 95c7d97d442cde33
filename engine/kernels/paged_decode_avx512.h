// The AVX-512 path of paged_decode.cpp: head_dim a multiple of 16, up to 8 query heads per KV
// head (every GQA model we serve).
//
// The two-pass kernel reads every key, then every value row of a sequence; with a context of a
// few hundred tokens its K has left L1 before V is read, and it spends most of its time in one
// horizontal sum per key and query head and in loading and storing the accumulators per value
// row. Here one pass walks the blocks, 16 keys at a time, with an online softmax (a running max
// and sum per query head; the accumulators are rescaled when the max grows): K and V of a block
// are read together, the next block's are prefetched (blocks are scattered, so the hardware
// prefetcher stops at every block edge). The 16 scores of a query head come out as one zmm
// through a transpose-reduce (15 adds, 30 shuffles, not 16 horizontal sums), exp runs on 16
// lanes, and the accumulators of a 16- or 32-wide slice of head_dim for every query head stay in
// registers across the 16 value rows. Accumulation is float32, as on the other paths.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "simd.h"

namespace pd512 {

constexpr int kKeys = 16;  // keys per step: one zmm of scores
constexpr int64_t kMaxGroup = 8;  // query heads per KV head held in registers

// r[t] = the sum of a[t]'s 16 lanes. Pairs are merged at each level (within 128-bit lanes by
// unpack, then across them by shuffle_f32x4), halving the vectors and doubling what each holds.
inline __m512 reduce16(const __m512* a) {
  __m512 b[8], c[4];
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
    c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const auto merge = [](__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
  };
  return merge(merge(c[0], c[1]), merge(c[2], c[3]));
}

// Lane t: q . k_t for the n <= 16 key rows at k (lanes from n on are 0); Full: n == 16, and
// no test per row.
template <bool Full, typename T>
inline __m512 scores16(const float* q, const T* k, int n, int64_t d) {
  __m512 a[kKeys];
  for (int t = 0; t < kKeys; ++t) a[t] = _mm512_setzero_ps();
  for (int64_t x = 0; x < d; x += 16) {
    const __m512 qv = _mm512_loadu_ps(q + x);
#pragma GCC unroll 16
    for (int t = 0; t < kKeys; ++t)
      if (Full || t < n) a[t] = _mm512_fmadd_ps(qv, load16(k + t * d + x, 0xFFFF), a[t]);
  }
  return reduce16(a);
}

// acc_h += sum_t p[h][t] v_t over n value rows, C zmm of head_dim at a time.
template <int G, int C, typename T>
inline void accumulate(const float (*p)[kKeys], const T* v, int n, int64_t d, float* acc) {
  for (int64_t x = 0; x < d; x += 16 * C) {
    __m512 a[G][C];
    for (int h = 0; h < G; ++h)
      for (int c = 0; c < C; ++c) a[h][c] = _mm512_loadu_ps(acc + h * d + x + 16 * c);
    for (int t = 0; t < n; ++t) {
      __m512 vv[C];
      for (int c = 0; c < C; ++c) vv[c] = load16(v + t * d + x + 16 * c, 0xFFFF);
      for (int h = 0; h < G; ++h) {
        const __m512 pb = _mm512_set1_ps(p[h][t]);
        for (int c = 0; c < C; ++c) a[h][c] = _mm512_fmadd_ps(pb, vv[c], a[h][c]);
      }
    }
    for (int h = 0; h < G; ++h)
      for (int c = 0; c < C; ++c) _mm512_storeu_ps(acc + h * d + x + 16 * c, a[h][c]);
  }
}

// Running softmax of each query head: the max m it subtracts, and 16 lanes of sum exp(s - m).
struct Softmax {
  float m[kMaxGroup];
  __m512 l[kMaxGroup];
};

// m is raised only when a score passes it by more than kSlack: exp(s - m) stays below e^8 (far
// from float32's range), and most steps skip the rescale and the horizontal max it needs.
constexpr float kSlack = 8.f;

// Head h's max becomes that of s (it grew past m + kSlack): its sum and accumulator rescale.
inline void raise_max(int h, __m512 s, __mmask16 live, int64_t d, float* acc, Softmax& sm) {
  const float m = _mm512_mask_reduce_max_ps(live, s);
  const __m512 alpha = _mm512_set1_ps(std::exp(sm.m[h] - m));  // 0 at the start: m was -inf
  sm.l[h] = _mm512_mul_ps(sm.l[h], alpha);
  for (int64_t x = h * d; x < (h + 1) * d; x += 16)
    _mm512_storeu_ps(acc + x, _mm512_mul_ps(_mm512_loadu_ps(acc + x), alpha));
  sm.m[h] = m;
}

// n <= 16 consecutive keys and values (rows of one block) into the G heads' accumulators.
template <int G, typename T>
inline void step(const float* qf, const T* k, const T* v, int n, int64_t d, float* acc,
                 Softmax& sm) {
  alignas(64) float p[G][kKeys];
  const __mmask16 live = static_cast<__mmask16>((1u << n) - 1);
  for (int h = 0; h < G; ++h) {
    const __m512 s = n == kKeys ? scores16<true>(qf + h * d, k, n, d)
                                : scores16<false>(qf + h * d, k, n, d);
    if (_mm512_mask_cmp_ps_mask(live, s, _mm512_set1_ps(sm.m[h] + kSlack), _CMP_GT_OQ))
      raise_max(h, s, live, d, acc, sm);
    const __m512 e = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(s, _mm512_set1_ps(sm.m[h]))));
    sm.l[h] = _mm512_add_ps(sm.l[h], e);
    _mm512_store_ps(p[h], e);
  }
  if (d % 32 == 0)
    accumulate<G, 2>(p, v, n, d, acc);
  else
    accumulate<G, 1>(p, v, n, d, acc);
}

// Touch every cache line of a block's K and V rows, to be read a block later.
inline void prefetch(const void* k, const void* v, int64_t bytes) {
  const char* a = static_cast<const char*>(k);
  const char* b = static_cast<const char*>(v);
  for (int64_t off = 0; off < bytes; off += 64) {
    _mm_prefetch(a + off, _MM_HINT_T0);
    _mm_prefetch(b + off, _MM_HINT_T0);
  }
}

// Where one (sequence, KV head) reads: its block table, keys [first, len), rows of d.
struct Walk {
  const int64_t* table;
  int64_t first, len, block_size, d;
};

// The G query rows at q (head-major, d each) against w's keys -> out (G rows of d).
template <int G, typename T>
void attend(const T* q, const T* k, const T* v, const Walk& w, float scale, T* out,
            std::vector<float>& buf) {
  const int64_t d = w.d, bs = w.block_size;
  buf.resize(2 * G * d);
  float* qf = buf.data();
  float* acc = qf + G * d;
  for (int64_t i = 0; i < G * d; ++i) qf[i] = static_cast<float>(q[i]) * scale, acc[i] = 0.f;
  Softmax sm;
  std::fill(sm.m, sm.m + G, -std::numeric_limits<float>::infinity());
  std::fill(sm.l, sm.l + G, _mm512_setzero_ps());
  for (int64_t t0 = w.first / bs * bs; t0 < w.len; t0 += bs) {
    const int64_t off = w.table[t0 / bs] * bs * d;
    if (t0 + bs < w.len) {
      const int64_t next = w.table[t0 / bs + 1] * bs * d;
      prefetch(k + next, v + next, bs * d * static_cast<int64_t>(sizeof(T)));
    }
    const int64_t end = std::min(w.len, t0 + bs);
    for (int64_t t = std::max(w.first, t0); t < end; t += kKeys) {
      const int n = static_cast<int>(std::min<int64_t>(kKeys, end - t));
      step<G>(qf, k + off + (t - t0) * d, v + off + (t - t0) * d, n, d, acc, sm);
    }
  }
  for (int h = 0; h < G; ++h) {
    const float l = _mm512_reduce_add_ps(sm.l[h]);
    for (int64_t x = 0; x < d; ++x) out[h * d + x] = static_cast<T>(acc[h * d + x] / l);
  }
}

// The AVX-512 path when it applies (head_dim % 16 == 0, g <= 8); false: use the others.
template <typename T>
bool try_attend(const T* q, const T* k, const T* v, const Walk& w, int64_t g, float scale,
                T* out, std::vector<float>& buf) {
  if (w.d % 16 != 0 || g < 1 || g > kMaxGroup) return false;
  switch (g) {
    case 1: attend<1>(q, k, v, w, scale, out, buf); break;
    case 2: attend<2>(q, k, v, w, scale, out, buf); break;
    case 3: attend<3>(q, k, v, w, scale, out, buf); break;
    case 4: attend<4>(q, k, v, w, scale, out, buf); break;
    case 5: attend<5>(q, k, v, w, scale, out, buf); break;
    case 6: attend<6>(q, k, v, w, scale, out, buf); break;
    case 7: attend<7>(q, k, v, w, scale, out, buf); break;
    default: attend<8>(q, k, v, w, scale, out, buf); break;
  }
  return true;
}

}  // namespace pd512
#endif
