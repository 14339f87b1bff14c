// Python binding of mmcv 2.1.0's MSDA CUDA launchers, the baseline of
// tools/device/cuda_check.sh. Only this file is vitdense's: the launchers
// (mmcv/ops/csrc/pytorch/cuda/ms_deform_attn_cuda.cu and the kernels it
// includes) are compiled from mmcv's source distribution by
// tools/device/mmcv_msda.py, never copied into the repository.
#include <torch/extension.h>

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor &value,
                                       const at::Tensor &spatial_shapes,
                                       const at::Tensor &level_start_index,
                                       const at::Tensor &sampling_loc,
                                       const at::Tensor &attn_weight,
                                       const int im2col_step);

void ms_deform_attn_cuda_backward(
    const at::Tensor &value, const at::Tensor &spatial_shapes,
    const at::Tensor &level_start_index, const at::Tensor &sampling_loc,
    const at::Tensor &attn_weight, const at::Tensor &grad_output,
    at::Tensor &grad_value, at::Tensor &grad_sampling_loc,
    at::Tensor &grad_attn_weight, const int im2col_step);

// As mmcv's MultiScaleDeformableAttnFunction.backward: zero-initialised
// gradients that the kernel accumulates into.
std::vector<at::Tensor> backward(const at::Tensor &value,
                                 const at::Tensor &spatial_shapes,
                                 const at::Tensor &level_start_index,
                                 const at::Tensor &sampling_loc,
                                 const at::Tensor &attn_weight,
                                 const at::Tensor &grad_output,
                                 int64_t im2col_step) {
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::zeros_like(sampling_loc);
  auto grad_attn = at::zeros_like(attn_weight);
  ms_deform_attn_cuda_backward(value, spatial_shapes, level_start_index,
                               sampling_loc, attn_weight, grad_output,
                               grad_value, grad_loc, grad_attn,
                               static_cast<int>(im2col_step));
  return {grad_value, grad_loc, grad_attn};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &ms_deform_attn_cuda_forward, "mmcv MSDA forward (CUDA)");
  m.def("backward", &backward, "mmcv MSDA backward (CUDA)");
}
