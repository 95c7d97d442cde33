// Elementwise layers fused into one pass each: (residual add +) RMSNorm, SwiGLU, and rotary.
//
// In PyTorch each is 4-7 separate ops over the activations, so a 8192-token prefill step reads and
// writes [T, hidden] several times per layer. Each kernel here reads its inputs once and writes
// its outputs once. They round exactly where the PyTorch modules do (float32 math, the result
// rounded to the activation dtype at the same points), and build.py compiles them with
// -ffp-contract=off so that a*b-c stays two roundings, as in PyTorch.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace {

template <typename T>
inline T round_to(float v) { return static_cast<T>(v); }

// out = to_T(x * rsqrt(mean(x^2) + eps)) * w, per row; with a residual, x = x + residual first
// (rounded to T, as torch's add is) and that sum is returned as the new residual.
template <typename T>
void rms_rows(const T* x, const T* res, const T* w, float eps, int64_t rows, int64_t h, T* out,
              T* new_res) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * h;
      T* sr = new_res ? new_res + r * h : nullptr;
      float sq[8] = {0.f};  // 8 partial sums, as torch's vectorized mean keeps
      for (int64_t i = 0; i < h; ++i) {
        float v = static_cast<float>(xr[i]);
        if (sr) {
          const T s = round_to<T>(v + static_cast<float>(res[r * h + i]));
          sr[i] = s;
          v = static_cast<float>(s);
        }
        sq[i % 8] += v * v;
      }
      const float total = ((sq[0] + sq[1]) + (sq[2] + sq[3])) + ((sq[4] + sq[5]) + (sq[6] + sq[7]));
      const float inv = 1.f / std::sqrt(total / static_cast<float>(h) + eps);
      const T* src = sr ? sr : xr;
      for (int64_t i = 0; i < h; ++i) {
        const T normed = round_to<T>(static_cast<float>(src[i]) * inv);
        out[r * h + i] = round_to<T>(static_cast<float>(normed) * static_cast<float>(w[i]));
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& x,
                                            const c10::optional<at::Tensor>& residual,
                                            const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 1 && x.size(1) == weight.size(0),
              "rms_norm: x [T, hidden], weight [hidden]");
  auto xc = x.contiguous();
  auto wc = weight.to(x.scalar_type()).contiguous();
  auto out = at::empty_like(xc);
  at::Tensor rc, new_res;
  if (residual) {
    rc = residual->contiguous();
    new_res = at::empty_like(xc);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rms_norm", [&] {
    rms_rows<scalar_t>(xc.data_ptr<scalar_t>(), residual ? rc.data_ptr<scalar_t>() : nullptr,
                       wc.data_ptr<scalar_t>(), static_cast<float>(eps), xc.size(0), xc.size(1),
                       out.data_ptr<scalar_t>(),
                       residual ? new_res.data_ptr<scalar_t>() : nullptr);
  });
  return {out, new_res};
}

// [T, 2I] (gate | up) -> silu(gate) * up, [T, I]: ATen's own vectorized silu and mul, so the
// result is bit for bit PyTorch's (and HF's), run on row chunks small enough that the silu output
// is still in L2 when the product reads it (one pass over memory instead of three).
at::Tensor silu_and_mul(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) % 2 == 0, "silu_and_mul: x [T, 2 * intermediate]");
  const int64_t rows = x.size(0), half = x.size(1) / 2;
  auto out = at::empty({rows, half}, x.options());
  const int64_t chunk = std::max<int64_t>(1, (64 * 1024) / std::max<int64_t>(1, half));
  at::parallel_for(0, rows, chunk, [&](int64_t begin, int64_t end) {
    // OpenMP threads do not inherit the caller's inference mode; ops on its tensors need it.
    c10::InferenceMode guard;
    for (int64_t r = begin; r < end; r += chunk) {
      const int64_t n = std::min(chunk, end - r);
      auto part = x.narrow(0, r, n);
      auto o = out.narrow(0, r, n);
      at::silu_out(o, part.narrow(1, 0, half));
      o.mul_(part.narrow(1, half, half));
    }
  });
  return out;
}

// Rotate-half RoPE: x [T, heads, d] (queries and keys side by side), cos/sin [T, d/2] rows of
// each token's position -> a rotated copy. (x1*c - x2*s, x2*c + x1*s), each product rounded.
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 3 && cos.dim() == 2 && cos.size(0) == x.size(0) &&
                  cos.size(1) * 2 == x.size(2) && sin.sizes() == cos.sizes(),
              "rotary: x [T, heads, d], cos/sin [T, d/2]");
  TORCH_CHECK(x.stride(2) == 1 && x.stride(1) == x.size(2), "rotary: x rows must be contiguous");
  auto cc = cos.contiguous(), sc = sin.contiguous();
  const int64_t tokens = x.size(0), heads = x.size(1), half = x.size(2) / 2;
  const int64_t row = x.stride(0);
  auto out = at::empty({tokens, heads, 2 * half}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rotary", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* cp = cc.data_ptr<scalar_t>();
    const scalar_t* sp = sc.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    using T = scalar_t;
    at::parallel_for(0, tokens, 16, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        for (int64_t h = 0; h < heads; ++h) {
          const T* a = xp + t * row + h * 2 * half;
          T* o = op + (t * heads + h) * 2 * half;
          for (int64_t i = 0; i < half; ++i) {
            const float c = static_cast<float>(cp[t * half + i]);
            const float s = static_cast<float>(sp[t * half + i]);
            const float x1 = static_cast<float>(a[i]), x2 = static_cast<float>(a[half + i]);
            const float x1c = static_cast<float>(round_to<T>(x1 * c));
            const float x2s = static_cast<float>(round_to<T>(x2 * s));
            const float x2c = static_cast<float>(round_to<T>(x2 * c));
            const float x1s = static_cast<float>(round_to<T>(x1 * s));
            o[i] = round_to<T>(x1c - x2s);
            o[half + i] = round_to<T>(x2c + x1s);
          }
        }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(onenode, m) {
  m.def("rms_norm(Tensor x, Tensor? residual, Tensor weight, float eps) -> (Tensor, Tensor)");
  m.def("silu_and_mul(Tensor x) -> Tensor");
  m.def("rotary(Tensor x, Tensor cos, Tensor sin) -> Tensor");
}

TORCH_LIBRARY_IMPL(onenode, CPU, m) {
  m.impl("rms_norm", &rms_norm);
  m.impl("silu_and_mul", &silu_and_mul);
  m.impl("rotary", &rotary);
}
