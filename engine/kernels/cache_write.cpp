// Writing a step's new keys and values into the paged, head-major KV cache.
//
// The cache is [kv_heads, num_blocks * block_size, d] per layer and a step's K/V are [T, kv_heads,
// d]: each (token, KV head) row lands at its own slot. PyTorch's index_copy_ along dim 1 of that
// view copies element by element on one thread (~0.4 ms a layer for a 64-row decode step, ~5 ms
// for an 8k-token prefill); here each row is one memcpy of d elements, spread over the threads.
// Pure copies: the cache holds exactly the bytes of k and v.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

namespace {

void write_one(const at::Tensor& src, at::Tensor& cache, const int64_t* slots) {
  const int64_t tokens = src.size(0), kvh = src.size(1), d = src.size(2);
  const int64_t item = src.element_size(), head_stride = cache.stride(0), bytes = d * item;
  const int64_t src_token = src.stride(0), src_head = src.stride(1);
  const char* sp = static_cast<const char*>(src.data_ptr());
  char* cp = static_cast<char*>(cache.data_ptr());
  at::parallel_for(0, tokens * kvh, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = i / kvh, h = i % kvh;
      std::memcpy(cp + (h * head_stride + slots[t] * d) * item,
                  sp + (t * src_token + h * src_head) * item, bytes);
    }
  });
}

void cache_write(const at::Tensor& k, const at::Tensor& v, at::Tensor k_cache, at::Tensor v_cache,
                 const at::Tensor& slot_mapping) {
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes(), "cache_write: k, v [T, kv_heads, d]");
  TORCH_CHECK(k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes() &&
                  k_cache.is_contiguous() && v_cache.is_contiguous(),
              "cache_write: caches [kv_heads, blocks, block_size, d], contiguous");
  TORCH_CHECK(k.size(1) == k_cache.size(0) && k.size(2) == k_cache.size(3),
              "cache_write: kv_heads or head_dim do not match the cache");
  TORCH_CHECK(k.scalar_type() == k_cache.scalar_type() && v.scalar_type() == v_cache.scalar_type(),
              "cache_write: K/V and cache dtypes differ");
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.numel() == k.size(0),
              "cache_write: one int64 slot per token");
  TORCH_CHECK(k.stride(2) == 1 && v.stride(2) == 1, "cache_write: head rows must be contiguous");
  auto slots = slot_mapping.contiguous();
  auto kc = k_cache.view({k_cache.size(0), -1, k_cache.size(3)});
  auto vc = v_cache.view({v_cache.size(0), -1, v_cache.size(3)});
  write_one(k, kc, slots.data_ptr<int64_t>());
  write_one(v, vc, slots.data_ptr<int64_t>());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(onenode, m) {
  m.def("cache_write(Tensor k, Tensor v, Tensor(a!) k_cache, Tensor(b!) v_cache, "
        "Tensor slot_mapping) -> ()");
}

TORCH_LIBRARY_IMPL(onenode, CPU, m) { m.impl("cache_write", &cache_write); }
