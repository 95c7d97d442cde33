// Causal prefill attention for one sequence on CPU (AVX-512), reading its rows where they lie.
//
// PyTorch's CPU flash kernel runs at ~80 GFLOPS on the prompts a batch holds (a few hundred
// tokens), in float32 and bfloat16 alike: one small GEMM call per block, with its packing, for
// each query head. Here a work item is (KV head, 32 query positions), and the rows of its G query
// heads (GQA) share every key. K is transposed once per call (16 keys a zmm); scores come in
// 4-row x 64-key register tiles (16 FMAs per head element), the softmax is online per row in
// float32 (the decode kernel's exp16), and P V runs in 4-row x 64-column register tiles. Tiles
// stay at 16 accumulators: GCC keeps a 6 x 4 tile in registers but also stores it to the stack
// on every key, which made P V store-bound at half the speed. Everything inside is float32;
// bfloat16 inputs are widened as they are read and the output is rounded once at the end.
// Query i sits at position offset + i and sees keys 0 .. offset + i (a cached prefix comes
// first). Items go to the threads dynamically, the most keys first (later queries see more).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "simd.h"

namespace {

#if defined(__AVX512F__)
constexpr int64_t kQ = 32;  // query positions per work item
constexpr int64_t kK = 64;  // keys per online-softmax step: 4 zmm of scores a row

struct Shape {
  int64_t n, len, kvh, g, d, offset;
};

// kt[j][b][x][t] = k[16 b + t][j][x], 0 past len: one head element of 16 keys per zmm.
template <typename T>
void pack_keys(const T* k, int64_t s0, int64_t s1, const Shape& s, float* kt) {
  const int64_t nb = (s.len + 15) / 16;
  at::parallel_for(0, s.kvh * nb, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t j = i / nb, b = i % nb;
      float* dst = kt + i * s.d * 16;
      for (int64_t t = 0; t < 16; ++t) {
        const int64_t pos = b * 16 + t;
        const T* row = k + pos * s0 + j * s1;
        for (int64_t x = 0; x < s.d; ++x) dst[x * 16 + t] = pos < s.len ? float(row[x]) : 0.f;
      }
    }
  });
}

// sc[r][0, 16 Z) = qf[r] . key, for R rows of qf (d each) and Z zmm of packed keys at kt.
template <int R, int Z>
void score_tile(const float* qf, const float* kt, int64_t d, float* sc) {
  __m512 a[R][Z];
  for (int r = 0; r < R; ++r)
    for (int z = 0; z < Z; ++z) a[r][z] = _mm512_setzero_ps();
  for (int64_t x = 0; x < d; ++x) {
    __m512 kv[Z];
    for (int z = 0; z < Z; ++z) kv[z] = _mm512_loadu_ps(kt + (z * d + x) * 16);
    for (int r = 0; r < R; ++r) {
      const __m512 qb = _mm512_set1_ps(qf[r * d + x]);
      for (int z = 0; z < Z; ++z) a[r][z] = _mm512_fmadd_ps(qb, kv[z], a[r][z]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int z = 0; z < Z; ++z) _mm512_storeu_ps(sc + r * kK + 16 * z, a[r][z]);
}

template <int R>
void score_rows(const float* qf, const float* kt, int64_t d, int z, float* sc) {
  switch (z) {
    case 1: score_tile<R, 1>(qf, kt, d, sc); break;
    case 2: score_tile<R, 2>(qf, kt, d, sc); break;
    case 3: score_tile<R, 3>(qf, kt, d, sc); break;
    default: score_tile<R, 4>(qf, kt, d, sc); break;
  }
}

// o[r][0, 16 C) += sum_c p[r][c] v[c] over nk value rows (row stride vs), R rows.
template <int R, int C, typename T>
void pv_tile(const float* p, const T* v, int64_t vs, int64_t nk, int64_t d, float* o) {
  __m512 a[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) a[r][c] = _mm512_loadu_ps(o + r * d + 16 * c);
  for (int64_t t = 0; t < nk; ++t) {
    __m512 vv[C];
    for (int c = 0; c < C; ++c) vv[c] = load16(v + t * vs + 16 * c, 0xFFFF);
    for (int r = 0; r < R; ++r) {
      const __m512 pb = _mm512_set1_ps(p[r * kK + t]);
      for (int c = 0; c < C; ++c) a[r][c] = _mm512_fmadd_ps(pb, vv[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(o + r * d + 16 * c, a[r][c]);
}

template <int R, typename T>
void pv_rows(const float* p, const T* v, int64_t vs, int64_t nk, int64_t d, float* o) {
  for (int64_t x = 0; x < d; x += 64) {
    switch (std::min<int64_t>(4, (d - x) / 16)) {
      case 1: pv_tile<R, 1>(p, v + x, vs, nk, d, o + x); break;
      case 2: pv_tile<R, 2>(p, v + x, vs, nk, d, o + x); break;
      case 3: pv_tile<R, 3>(p, v + x, vs, nk, d, o + x); break;
      default: pv_tile<R, 4>(p, v + x, vs, nk, d, o + x); break;
    }
  }
}

// One work item's state: rows r = h * nq + i (query head h of the group, position i).
struct Item {
  std::vector<float> qf, sc, o, m, l;
  std::vector<int64_t> live;  // keys of the current block that row r sees
  explicit Item(int64_t rows, int64_t d)
      : qf(rows * d), sc(rows * kK), o(rows * d), m(rows), l(rows), live(rows) {}
};

// The first n of 16 lanes (all for n >= 16, none for n <= 0).
inline __mmask16 first(int64_t n) {
  return n >= 16 ? 0xFFFF : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

// Row r's scores of this block -> exp(s - max) in place (0 past the keys it sees); rescales its
// o and l when the max grows.
void softmax_row(Item& it, int64_t r, int64_t nk, int64_t d) {
  float* s = it.sc.data() + r * kK;
  const int64_t n = std::min(nk, it.live[r]);
  if (n <= 0) {
    std::fill(s, s + nk, 0.f);
    return;
  }
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t c = 0; c < n; c += 16)
    mx = _mm512_mask_max_ps(mx, first(n - c), mx, _mm512_loadu_ps(s + c));
  const float m = std::max(it.m[r], _mm512_reduce_max_ps(mx));
  if (m > it.m[r]) {  // the first block, or a larger score: rescale what came before
    const float alpha = std::exp(it.m[r] - m);
    it.l[r] *= alpha;
    for (int64_t x = 0; x < d; ++x) it.o[r * d + x] *= alpha;
    it.m[r] = m;
  }
  __m512 sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < nk; c += 16) {
    const __m512 e = _mm512_maskz_mov_ps(
        first(n - c), exp16(_mm512_sub_ps(_mm512_loadu_ps(s + c), _mm512_set1_ps(m))));
    sum = _mm512_add_ps(sum, e);
    _mm512_storeu_ps(s + c, e);
  }
  it.l[r] += _mm512_reduce_add_ps(sum);
}

// Scores, softmax and P V of every row of the item against keys [c0, c0 + nk).
template <typename T>
void key_block(Item& it, const float* kt, const T* v, int64_t vs, int64_t rows, int64_t nk,
               int64_t d) {
  const int z = static_cast<int>((nk + 15) / 16);
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) score_rows<4>(&it.qf[r * d], kt, d, z, &it.sc[r * kK]);
  for (; r < rows; ++r) score_rows<1>(&it.qf[r * d], kt, d, z, &it.sc[r * kK]);
  for (r = 0; r < rows; ++r) softmax_row(it, r, nk, d);
  for (r = 0; r < rows; r += 4) {
    const int64_t tile = std::min<int64_t>(4, rows - r);
    int64_t seen = 0;
    for (int64_t i = r; i < r + tile; ++i) seen = std::max(seen, std::min(nk, it.live[i]));
    const float* p = &it.sc[r * kK];
    float* o = &it.o[r * d];
    switch (tile) {
      case 4: pv_rows<4>(p, v, vs, seen, d, o); break;
      case 3: pv_rows<3>(p, v, vs, seen, d, o); break;
      case 2: pv_rows<2>(p, v, vs, seen, d, o); break;
      default: pv_rows<1>(p, v, vs, seen, d, o); break;
    }
  }
}

struct Strides {
  int64_t q0, q1, v0, v1;
};

// KV head j, query positions [q0, q0 + nq): the group's rows, every key block they see.
template <typename T>
void run_item(const T* q, const T* v, const float* kt, const Shape& s, const Strides& st,
              float scale, int64_t j, int64_t q0, T* out, Item& it) {
  const int64_t nq = std::min(kQ, s.n - q0), rows = s.g * nq, d = s.d;
  for (int64_t h = 0; h < s.g; ++h)
    for (int64_t i = 0; i < nq; ++i) {
      const T* src = q + (q0 + i) * st.q0 + (j * s.g + h) * st.q1;
      for (int64_t x = 0; x < d; ++x) it.qf[(h * nq + i) * d + x] = float(src[x]) * scale;
    }
  std::fill(it.o.begin(), it.o.begin() + rows * d, 0.f);
  std::fill(it.m.begin(), it.m.begin() + rows, -std::numeric_limits<float>::infinity());
  std::fill(it.l.begin(), it.l.begin() + rows, 0.f);
  const int64_t end = s.offset + q0 + nq;  // keys the last query sees
  const float* ktj = kt + j * ((s.len + 15) / 16) * 16 * d;
  for (int64_t c0 = 0; c0 < end; c0 += kK) {
    const int64_t nk = std::min(kK, end - c0);
    for (int64_t r = 0; r < rows; ++r) it.live[r] = s.offset + q0 + r % nq + 1 - c0;
    key_block(it, ktj + c0 * d, v + c0 * st.v0 + j * st.v1, st.v0, rows, nk, d);
  }
  for (int64_t h = 0; h < s.g; ++h)
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t r = h * nq + i;
      T* dst = out + ((q0 + i) * s.kvh * s.g + j * s.g + h) * d;
      const float inv = 1.f / it.l[r];
      for (int64_t x = 0; x < d; ++x) dst[x] = static_cast<T>(it.o[r * d + x] * inv);
    }
}

template <typename T>
void run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
         int64_t offset, at::Tensor& out) {
  const Shape s{q.size(0), k.size(0), k.size(1), q.size(1) / k.size(1), q.size(2), offset};
  const Strides st{q.stride(0), q.stride(1), v.stride(0), v.stride(1)};
  auto kt = at::empty({s.kvh * ((s.len + 15) / 16) * 16 * s.d}, q.options().dtype(at::kFloat));
  pack_keys(k.data_ptr<T>(), k.stride(0), k.stride(1), s, kt.data_ptr<float>());
  const int64_t blocks = (s.n + kQ - 1) / kQ, items = blocks * s.kvh;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    Item it(s.g * kQ, s.d);
    for (int64_t i = next++; i < items; i = next++)  // the last query block first: most keys
      run_item<T>(q.data_ptr<T>(), v.data_ptr<T>(), kt.data_ptr<float>(), s, st,
                  static_cast<float>(scale), i % s.kvh, (blocks - 1 - i / s.kvh) * kQ,
                  out.data_ptr<T>(), it);
  });
}
#endif

bool prefill_attention_supported() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

at::Tensor prefill_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             double scale, int64_t offset) {
  TORCH_CHECK(prefill_attention_supported(), "prefill_attention: built without AVX-512");
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.sizes() == k.sizes(),
              "prefill_attention: q [n, heads, d], k and v [len, kv_heads, d]");
  TORCH_CHECK(q.size(2) == k.size(2) && q.size(2) % 16 == 0 && q.size(1) % k.size(1) == 0,
              "prefill_attention: head_dim a multiple of 16, heads a multiple of kv_heads");
  TORCH_CHECK(offset >= 0 && offset + q.size(0) == k.size(0),
              "prefill_attention: the queries are the last n of the len positions");
  TORCH_CHECK(q.stride(2) == 1 && k.stride(2) == 1 && v.stride(2) == 1,
              "prefill_attention: head rows must be contiguous");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "prefill_attention: q, k and v dtypes differ");
  auto out = at::empty({q.size(0), q.size(1) * q.size(2)}, q.options());
#if defined(__AVX512F__)
  if (q.size(0) == 0) return out;
  switch (q.scalar_type()) {
    case at::kFloat: run<float>(q, k, v, scale, offset, out); break;
    case at::kBFloat16: run<c10::BFloat16>(q, k, v, scale, offset, out); break;
    default: TORCH_CHECK(false, "prefill_attention: float32 or bfloat16 only");
  }
#endif
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(onenode, m) {
  m.def("prefill_attention(Tensor q, Tensor k, Tensor v, float scale, int offset) -> Tensor");
  m.def("prefill_attention_supported() -> bool", &prefill_attention_supported);
}

TORCH_LIBRARY_IMPL(onenode, CPU, m) { m.impl("prefill_attention", &prefill_attention); }
