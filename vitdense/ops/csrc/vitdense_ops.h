// Declarations of vitdense's compiled ops (registered in vitdense.cpp).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace vitdense {

// Multi-scale deformable attention (Deformable DETR, arXiv:2010.04159).
// value [B, Lv, H, D]; spatial_shapes [L, 2] int64 (h, w);
// level_start_index [L] int64; sampling_loc [B, Lq, H, L, P, 2] (x, y) in
// [0, 1]; attn_weight [B, Lq, H, L, P], logits of a fused softmax over the
// L * P weights of each (query, head) when `softmax`. Returns [B, Lq, H * D].
at::Tensor msda_forward_cpu(const at::Tensor &value,
                            const at::Tensor &spatial_shapes,
                            const at::Tensor &level_start_index,
                            const at::Tensor &sampling_loc,
                            const at::Tensor &attn_weight, bool softmax);
// Returns {grad_value, grad_sampling_loc, grad_attn_weight} (the gradient
// of the logits when `softmax`).
std::vector<at::Tensor> msda_backward_cpu(const at::Tensor &value,
                                          const at::Tensor &spatial_shapes,
                                          const at::Tensor &level_start_index,
                                          const at::Tensor &sampling_loc,
                                          const at::Tensor &attn_weight,
                                          const at::Tensor &grad_output,
                                          bool softmax);

// Relation-DETR position relation bias (arXiv:2407.11699), fused:
// relu(W * sine_embed(box_rel(src_i, tgt_j)) + b) -> [B, heads, N, M].
// src [B, N, 4], tgt [B, M, 4] (cxcywh); weight [heads, 4 * F]; bias
// [heads]; dim_t [F / 2] = temperature ** (2k / F); blocked: optional bool
// [N, M], those entries become -inf (an attention bias that blocks them).
at::Tensor relation_forward_cpu(const at::Tensor &src, const at::Tensor &tgt,
                                const at::Tensor &weight,
                                const at::Tensor &bias, const at::Tensor &dim_t,
                                double scale, double eps,
                                const c10::optional<at::Tensor> &blocked);
// Returns {grad_weight, grad_bias}.
std::vector<at::Tensor> relation_backward_cpu(
    const at::Tensor &src, const at::Tensor &tgt, const at::Tensor &output,
    const at::Tensor &dim_t, const at::Tensor &grad_output, double scale,
    double eps);

#ifdef WITH_CUDA
at::Tensor msda_forward_cuda(const at::Tensor &value,
                             const at::Tensor &spatial_shapes,
                             const at::Tensor &level_start_index,
                             const at::Tensor &sampling_loc,
                             const at::Tensor &attn_weight, bool softmax);
// deterministic: grad_value by a stable sort of the bilinear taps by pixel
// and an ordered per-pixel sum instead of atomics.
std::vector<at::Tensor> msda_backward_cuda(const at::Tensor &value,
                                           const at::Tensor &spatial_shapes,
                                           const at::Tensor &level_start_index,
                                           const at::Tensor &sampling_loc,
                                           const at::Tensor &attn_weight,
                                           const at::Tensor &grad_output,
                                           bool softmax, bool deterministic);
at::Tensor relation_forward_cuda(const at::Tensor &src, const at::Tensor &tgt,
                                 const at::Tensor &weight,
                                 const at::Tensor &bias,
                                 const at::Tensor &dim_t, double scale,
                                 double eps);
std::vector<at::Tensor> relation_backward_cuda(
    const at::Tensor &src, const at::Tensor &tgt, const at::Tensor &output,
    const at::Tensor &dim_t, const at::Tensor &grad_output, double scale,
    double eps);
#endif

}  // namespace vitdense
