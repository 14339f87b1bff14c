// Registration of vitdense's ops with the PyTorch dispatcher
// (torch.ops.vitdense.*): one schema per op (TORCH_LIBRARY) and one
// implementation per device (TORCH_LIBRARY_IMPL for CPU and CUDA). Their
// fake (meta) kernels and autograd formulas are registered from Python
// (vitdense/ops/multi_scale_deform_attn.py, relation_attention.py) through
// torch.library, so torch.compile, meta-device builds and autocast dispatch
// see ordinary ATen-style operators. The Python module itself only reports
// whether CUDA kernels were compiled in.
#include <torch/extension.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "vitdense_ops.h"

namespace vitdense {
namespace {

bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

using MSDAGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using RelationGrads = std::tuple<at::Tensor, at::Tensor>;

at::Tensor msda_forward_cpu_op(const at::Tensor &value,
                               const at::Tensor &spatial_shapes,
                               const at::Tensor &level_start_index,
                               const at::Tensor &sampling_loc,
                               const at::Tensor &attn_weight, bool softmax) {
  return msda_forward_cpu(value, spatial_shapes, level_start_index,
                          sampling_loc, attn_weight, softmax);
}

// The CPU backward is always deterministic (no atomics).
MSDAGrads msda_backward_cpu_op(const at::Tensor &value,
                               const at::Tensor &spatial_shapes,
                               const at::Tensor &level_start_index,
                               const at::Tensor &sampling_loc,
                               const at::Tensor &attn_weight,
                               const at::Tensor &grad_output, bool softmax,
                               bool /*deterministic*/) {
  auto grads = msda_backward_cpu(value, spatial_shapes, level_start_index,
                                 sampling_loc, attn_weight, grad_output,
                                 softmax);
  return {grads[0], grads[1], grads[2]};
}

RelationGrads relation_backward_cpu_op(const at::Tensor &src,
                                       const at::Tensor &tgt,
                                       const at::Tensor &output,
                                       const at::Tensor &dim_t,
                                       const at::Tensor &grad_output,
                                       double scale, double eps) {
  auto grads = relation_backward_cpu(src, tgt, output, dim_t, grad_output,
                                     scale, eps);
  return {grads[0], grads[1]};
}

#ifdef WITH_CUDA
MSDAGrads msda_backward_cuda_op(const at::Tensor &value,
                                const at::Tensor &spatial_shapes,
                                const at::Tensor &level_start_index,
                                const at::Tensor &sampling_loc,
                                const at::Tensor &attn_weight,
                                const at::Tensor &grad_output, bool softmax,
                                bool deterministic) {
  auto grads = msda_backward_cuda(value, spatial_shapes, level_start_index,
                                  sampling_loc, attn_weight, grad_output,
                                  softmax, deterministic);
  return {grads[0], grads[1], grads[2]};
}

at::Tensor relation_forward_cuda_op(const at::Tensor &src,
                                    const at::Tensor &tgt,
                                    const at::Tensor &weight,
                                    const at::Tensor &bias,
                                    const at::Tensor &dim_t, double scale,
                                    double eps,
                                    const c10::optional<at::Tensor> &blocked) {
  auto out = relation_forward_cuda(src, tgt, weight, bias, dim_t, scale, eps);
  if (blocked.has_value())
    out.masked_fill_(*blocked, -std::numeric_limits<double>::infinity());
  return out;
}

RelationGrads relation_backward_cuda_op(const at::Tensor &src,
                                        const at::Tensor &tgt,
                                        const at::Tensor &output,
                                        const at::Tensor &dim_t,
                                        const at::Tensor &grad_output,
                                        double scale, double eps) {
  auto grads = relation_backward_cuda(src, tgt, output, dim_t, grad_output,
                                      scale, eps);
  return {grads[0], grads[1]};
}
#endif

}  // namespace
}  // namespace vitdense

TORCH_LIBRARY(vitdense, m) {
  // value [B, Lv, H, D]; spatial_shapes [L, 2] and level_start_index [L]
  // int64 on value's device; sampling_loc [B, Lq, H, L, P, 2];
  // attn_weight [B, Lq, H, L, P] (logits when softmax) -> [B, Lq, H * D].
  m.def(
      "msda_forward(Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_loc, Tensor attn_weight, "
      "bool softmax) -> Tensor");
  // -> (grad_value, grad_sampling_loc, grad_attn_weight)
  m.def(
      "msda_backward(Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_loc, Tensor attn_weight, "
      "Tensor grad_output, bool softmax, bool deterministic) "
      "-> (Tensor, Tensor, Tensor)");
  // src [B, N, 4], tgt [B, M, 4]; weight [heads, 8 * len(dim_t)]; bias
  // [heads]; blocked: bool [N, M] or None -> [B, heads, N, M]
  m.def(
      "relation_forward(Tensor src, Tensor tgt, Tensor weight, Tensor bias, "
      "Tensor dim_t, float scale, float eps, Tensor? blocked) -> Tensor");
  // -> (grad_weight, grad_bias)
  m.def(
      "relation_backward(Tensor src, Tensor tgt, Tensor output, "
      "Tensor dim_t, Tensor grad_output, float scale, float eps) "
      "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vitdense, CPU, m) {
  m.impl("msda_forward", &vitdense::msda_forward_cpu_op);
  m.impl("msda_backward", &vitdense::msda_backward_cpu_op);
  m.impl("relation_forward", &vitdense::relation_forward_cpu);
  m.impl("relation_backward", &vitdense::relation_backward_cpu_op);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(vitdense, CUDA, m) {
  m.impl("msda_forward", &vitdense::msda_forward_cuda);
  m.impl("msda_backward", &vitdense::msda_backward_cuda_op);
  m.impl("relation_forward", &vitdense::relation_forward_cuda_op);
  m.impl("relation_backward", &vitdense::relation_backward_cuda_op);
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vitdense compiled ops: see torch.ops.vitdense";
  m.def("with_cuda", &vitdense::with_cuda,
        "Whether the CUDA kernels were compiled in");
}
