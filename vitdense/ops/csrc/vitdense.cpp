// Python bindings of vitdense._C: one entry per op, dispatched by device.
#include <torch/extension.h>

#include <limits>

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

[[noreturn]] void no_cuda(const char *op) {
  TORCH_CHECK(false, "vitdense._C.", op,
              ": CUDA tensors given but vitdense was built without CUDA");
}

at::Tensor msda_forward(const at::Tensor &value,
                        const at::Tensor &spatial_shapes,
                        const at::Tensor &level_start_index,
                        const at::Tensor &sampling_loc,
                        const at::Tensor &attn_weight) {
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return msda_forward_cuda(value, spatial_shapes, level_start_index,
                             sampling_loc, attn_weight);
#else
    no_cuda("msda_forward");
#endif
  }
  return msda_forward_cpu(value, spatial_shapes, level_start_index,
                          sampling_loc, attn_weight);
}

std::vector<at::Tensor> msda_backward(const at::Tensor &value,
                                      const at::Tensor &spatial_shapes,
                                      const at::Tensor &level_start_index,
                                      const at::Tensor &sampling_loc,
                                      const at::Tensor &attn_weight,
                                      const at::Tensor &grad_output,
                                      bool deterministic) {
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return msda_backward_cuda(value, spatial_shapes, level_start_index,
                              sampling_loc, attn_weight, grad_output,
                              deterministic);
#else
    no_cuda("msda_backward");
#endif
  }
  // The CPU backward is always deterministic (no atomics).
  return msda_backward_cpu(value, spatial_shapes, level_start_index,
                           sampling_loc, attn_weight, grad_output);
}

at::Tensor relation_forward(const at::Tensor &src, const at::Tensor &tgt,
                            const at::Tensor &weight, const at::Tensor &bias,
                            const at::Tensor &dim_t, double scale,
                            double eps,
                            const c10::optional<at::Tensor> &blocked) {
  if (src.is_cuda()) {
#ifdef WITH_CUDA
    auto out =
        relation_forward_cuda(src, tgt, weight, bias, dim_t, scale, eps);
    if (blocked.has_value())
      out.masked_fill_(*blocked, -std::numeric_limits<double>::infinity());
    return out;
#else
    no_cuda("relation_forward");
#endif
  }
  return relation_forward_cpu(src, tgt, weight, bias, dim_t, scale, eps,
                              blocked);
}

std::vector<at::Tensor> relation_backward(const at::Tensor &src,
                                          const at::Tensor &tgt,
                                          const at::Tensor &output,
                                          const at::Tensor &dim_t,
                                          const at::Tensor &grad_output,
                                          double scale, double eps) {
  if (src.is_cuda()) {
#ifdef WITH_CUDA
    return relation_backward_cuda(src, tgt, output, dim_t, grad_output, scale,
                                  eps);
#else
    no_cuda("relation_backward");
#endif
  }
  return relation_backward_cpu(src, tgt, output, dim_t, grad_output, scale,
                               eps);
}

}  // namespace
}  // namespace vitdense

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vitdense compiled ops (CPU, and CUDA when built with it)";
  m.def("with_cuda", &vitdense::with_cuda,
        "Whether the CUDA kernels were compiled in");
  m.def("msda_forward", &vitdense::msda_forward,
        "Multi-scale deformable attention, forward");
  m.def("msda_backward", &vitdense::msda_backward,
        "Multi-scale deformable attention, backward");
  m.def("relation_forward", &vitdense::relation_forward,
        "Fused box relation bias, forward");
  m.def("relation_backward", &vitdense::relation_backward,
        "Fused box relation bias, backward for weight and bias");
}
