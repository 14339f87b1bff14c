// Fused position relation bias of Relation-DETR (arXiv:2407.11699) on CPU.
//
// For boxes a = src[b, i], c = tgt[b, j] (cxcywh) the official code builds
//   e = [log(|dx| / (w_a + eps) + 1), log(|dy| / (h_a + eps) + 1),
//        log((w_a + eps) / (w_c + eps)), log((h_a + eps) / (h_c + eps))],
// a sine embedding of each feature (F dims: sin/cos of e * scale / dim_t,
// interleaved) and a 1x1 conv + ReLU to `heads` channels.
//
// The size features are differences u_a - u_c of per-box logs, so by the
// angle-difference identities their 2F embedding channels projected by the
// conv are an inner product of a per-(source, head) and a per-target vector:
//   Ws sin(t(u_a - u_c)) + Wc cos(t(u_a - u_c))
//     = cos(t u_c) (Ws sin(t u_a) + Wc cos(t u_a))
//     + sin(t u_c) (Wc sin(t u_a) - Ws cos(t u_a)),
// one batched GEMM with per-box sines (computed in double). Only the two
// centre-distance features need per-pair sines: their 2F-dim embedding only
// ever exists for a tile of 64 pairs in a stack buffer. The backward
// recomputes that tile and reduces grad_weight/grad_bias per chunk of rows,
// summing the chunks in a fixed order (deterministic); the size part of the
// gradient is again a GEMM. On AVX2 CPUs the float32 kernels are
// register-blocked intrinsics (relation_cpu_avx2.inc specialises them).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernel_math.h"
#include "vitdense_ops.h"

namespace vitdense {
namespace {

constexpr int64_t kTile = 64;

struct RelDims {
  // mp: m rounded up to 8, the row stride of the per-target size factor
  int64_t batch, n, m, heads, half, channels, mp;
};

RelDims check_inputs(const at::Tensor &src, const at::Tensor &tgt,
                     const at::Tensor &dim_t) {
  TORCH_CHECK(src.dim() == 3 && tgt.dim() == 3 && src.size(2) == 4 &&
                  tgt.size(2) == 4 && src.size(0) == tgt.size(0),
              "relation: boxes must be [B, N, 4] and [B, M, 4]");
  TORCH_CHECK(src.is_contiguous() && tgt.is_contiguous() &&
                  dim_t.is_contiguous(),
              "relation: inputs must be contiguous");
  TORCH_CHECK(tgt.scalar_type() == src.scalar_type() &&
                  dim_t.scalar_type() == src.scalar_type(),
              "relation: dtypes differ");
  TORCH_CHECK(src.scalar_type() == at::kFloat ||
                  src.scalar_type() == at::kDouble,
              "relation: only float32 and float64 are supported on CPU");
  TORCH_CHECK(dim_t.dim() == 1 && dim_t.size(0) > 0, "relation: bad dim_t");
  return {src.size(0), src.size(1), tgt.size(1), 0, dim_t.size(0),
          8 * dim_t.size(0), (tgt.size(1) + 7) / 8 * 8};
}

// Sines and cosines of (log(size + eps) * scale) / dim_t per box, computed in
// double: each [B, N, 2, F / 2] in the boxes' dtype.
std::pair<at::Tensor, at::Tensor> size_sincos(const at::Tensor &boxes,
                                              const at::Tensor &dim_t,
                                              double scale, double eps) {
  auto log_size = at::log(boxes.narrow(2, 2, 2).to(at::kDouble) + eps);
  auto phase = (log_size.unsqueeze(-1) * scale) / dim_t.to(at::kDouble);
  return {phase.sin().to(boxes.scalar_type()),
          phase.cos().to(boxes.scalar_type())};
}

// Per-target factor [B, 2 F, mp]: rows cos(t u_c), sin(t u_c) per size
// feature and frequency, zero-padded from M to mp columns (whole vectors).
at::Tensor target_factor(const at::Tensor &tgt, const at::Tensor &dim_t,
                         double scale, double eps, int64_t mp) {
  auto sc = size_sincos(tgt, dim_t, scale, eps);
  auto factor = at::cat({sc.second, sc.first}, -1)
                    .reshape({tgt.size(0), tgt.size(1), -1})
                    .transpose(1, 2);
  auto padded = at::zeros({tgt.size(0), factor.size(1), mp}, tgt.options());
  padded.narrow(2, 0, tgt.size(1)).copy_(factor);
  return padded;
}

// Weight slices of the size features' sine and cosine channels, [H, 2, F / 2].
std::pair<at::Tensor, at::Tensor> size_weights(const at::Tensor &weight,
                                               int64_t half) {
  auto w = weight.view({weight.size(0), 4, half, 2}).narrow(1, 2, 2);
  return {w.select(3, 0), w.select(3, 1)};
}

namespace generic {
#include "relation_cpu_kernels.inc"
}  // namespace generic

// The same kernels with AVX2 + FMA, picked at run time when the CPU has them
// (the loops vectorise 8-wide instead of SSE's 4-wide).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VITDENSE_RELATION_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "relation_cpu_kernels.inc"
#include "relation_cpu_avx2.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif

// VITDENSE_RELATION_GENERIC=1 forces the portable kernels (tests use it).
bool use_avx2() {
#ifdef VITDENSE_RELATION_AVX2
  static const bool supported =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      std::getenv("VITDENSE_RELATION_GENERIC") == nullptr;
  return supported;
#else
  return false;
#endif
}

}  // namespace

at::Tensor relation_forward_cpu(const at::Tensor &src, const at::Tensor &tgt,
                                const at::Tensor &weight,
                                const at::Tensor &bias, const at::Tensor &dim_t,
                                double scale, double eps,
                                const c10::optional<at::Tensor> &blocked) {
  RelDims d = check_inputs(src, tgt, dim_t);
  const bool *blocked_ptr = nullptr;
  if (blocked.has_value()) {
    TORCH_CHECK(blocked->scalar_type() == at::kBool && !blocked->is_cuda() &&
                    blocked->is_contiguous() && blocked->dim() == 2 &&
                    blocked->size(0) == d.n && blocked->size(1) == d.m,
                "relation: blocked must be a contiguous bool [N, M] tensor");
    blocked_ptr = blocked->data_ptr<bool>();
  }
  d.heads = weight.size(0);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == d.channels &&
                  weight.is_contiguous() && bias.dim() == 1 &&
                  bias.size(0) == d.heads && bias.is_contiguous() &&
                  weight.scalar_type() == src.scalar_type() &&
                  bias.scalar_type() == src.scalar_type(),
              "relation: weight must be [heads, 8 * len(dim_t)], bias [heads]");
  // size part: Ws sin + Wc cos = cos(t u_c) coef_cos + sin(t u_c) coef_sin
  auto src_sc = size_sincos(src, dim_t, scale, eps);  // [B, N, 2, F / 2]
  auto w = size_weights(weight, d.half);
  auto w_sin = w.first.unsqueeze(1), w_cos = w.second.unsqueeze(1);
  auto s = src_sc.first.unsqueeze(1), c = src_sc.second.unsqueeze(1);
  auto coef = at::cat({s * w_sin + c * w_cos, s * w_cos - c * w_sin}, -1)
                  .reshape({d.batch, d.heads, d.n, -1})
                  .contiguous();  // [B, H, N, 2 F]
  auto factor = target_factor(tgt, dim_t, scale, eps, d.mp);
  auto out = at::empty({d.batch, d.heads, d.n, d.m}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "relation_forward_cpu", [&] {
    auto kernel = generic::forward_kernel<scalar_t>;
#ifdef VITDENSE_RELATION_AVX2
    if (use_avx2()) kernel = avx2::forward_kernel<scalar_t>;
#endif
    kernel(d, src.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(),
           weight.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
           coef.data_ptr<scalar_t>(), factor.data_ptr<scalar_t>(),
           dim_t.data_ptr<scalar_t>(), static_cast<scalar_t>(scale),
           static_cast<scalar_t>(eps), blocked_ptr,
           out.data_ptr<scalar_t>());
  });
  return out;
}

std::vector<at::Tensor> relation_backward_cpu(
    const at::Tensor &src, const at::Tensor &tgt, const at::Tensor &output,
    const at::Tensor &dim_t, const at::Tensor &grad_output, double scale,
    double eps) {
  RelDims d = check_inputs(src, tgt, dim_t);
  d.heads = output.size(1);
  TORCH_CHECK(output.dim() == 4 && output.sizes() == grad_output.sizes() &&
                  output.size(0) == d.batch && output.size(2) == d.n &&
                  output.size(3) == d.m && output.is_contiguous() &&
                  grad_output.is_contiguous() &&
                  output.scalar_type() == src.scalar_type() &&
                  grad_output.scalar_type() == src.scalar_type(),
              "relation: output/grad_output must be contiguous [B, heads, N, M]");
  auto factor = target_factor(tgt, dim_t, scale, eps, d.mp);
  auto grad_weight = at::zeros({d.heads, d.channels}, src.options());
  auto grad_bias = at::zeros({d.heads}, src.options());
  auto grad_coef =
      at::zeros({d.batch, d.heads, d.n, d.channels / 2}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "relation_backward_cpu", [&] {
    auto kernel = generic::backward_kernel<scalar_t>;
#ifdef VITDENSE_RELATION_AVX2
    if (use_avx2()) kernel = avx2::backward_kernel<scalar_t>;
#endif
    kernel(d, src.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(),
           output.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
           factor.data_ptr<scalar_t>(), dim_t.data_ptr<scalar_t>(),
           static_cast<scalar_t>(scale), static_cast<scalar_t>(eps),
           grad_weight.data_ptr<scalar_t>(), grad_bias.data_ptr<scalar_t>(),
           grad_coef.data_ptr<scalar_t>());
  });
  // size part: coef_cos = Ws s + Wc c, coef_sin = Wc s - Ws c (per source)
  auto gc = grad_coef.view({d.batch, d.heads, d.n, 2, 2, d.half});
  auto g_cos = gc.select(4, 0), g_sin = gc.select(4, 1);
  auto src_sc = size_sincos(src, dim_t, scale, eps);
  auto s = src_sc.first.unsqueeze(1), c = src_sc.second.unsqueeze(1);
  auto grad_w = size_weights(grad_weight, d.half);
  grad_w.first.copy_((s * g_cos - c * g_sin).sum({0, 2}));
  grad_w.second.copy_((c * g_cos + s * g_sin).sum({0, 2}));
  return {grad_weight, grad_bias};
}

}  // namespace vitdense
