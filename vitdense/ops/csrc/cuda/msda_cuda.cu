// Multi-scale deformable attention on CUDA (Deformable DETR,
// arXiv:2010.04159); same semantics as msda_cpu.cpp.
//
// One warp per (batch, query, head); lanes walk the head's channels, so
// every bilinear corner is one coalesced row read. Accumulation in
// at::opmath_type (fp32 for half/bf16). The backward reduces the
// sampling-location and attention-weight gradients with warp shuffles (no
// shared memory, no __syncthreads) and scatters grad_value with atomics into
// an opmath-typed buffer; it is therefore not deterministic, and raises when
// deterministic algorithms are requested.
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "vitdense_ops.h"

namespace vitdense {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;

template <typename acc_t>
struct CornerGpu {
  int64_t pixel;
  acc_t w, dw_dx, dw_dy;
  bool valid;
};

// The four bilinear corners of (x, y) on an h x w map (align_corners=False,
// zero padding): corner k = (y0 + k / 2, x0 + k % 2).
template <typename acc_t>
__device__ __forceinline__ void corners(acc_t x, acc_t y, int64_t h,
                                        int64_t w, CornerGpu<acc_t> c[4]) {
  const bool inside = y > -1 && x > -1 && y < h && x < w;
  const acc_t yf = floor(y), xf = floor(x);
  const int64_t y0 = static_cast<int64_t>(yf), x0 = static_cast<int64_t>(xf);
  const acc_t ly = y - yf, lx = x - xf, hy = 1 - ly, hx = 1 - lx;
  c[0] = {y0 * w + x0, hy * hx, -hy, -hx, inside && y0 >= 0 && x0 >= 0};
  c[1] = {y0 * w + x0 + 1, hy * lx, hy, -lx, inside && y0 >= 0 && x0 + 1 < w};
  c[2] = {(y0 + 1) * w + x0, ly * hx, -ly, hx,
          inside && y0 + 1 < h && x0 >= 0};
  c[3] = {(y0 + 1) * w + x0 + 1, ly * lx, ly, lx,
          inside && y0 + 1 < h && x0 + 1 < w};
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename scalar_t>
__global__ void msda_forward_kernel(
    const scalar_t *__restrict__ value, const int64_t *__restrict__ shapes,
    const int64_t *__restrict__ starts, const scalar_t *__restrict__ loc,
    const scalar_t *__restrict__ attn, scalar_t *__restrict__ output,
    int64_t rows, int64_t num_query, int64_t num_value, int64_t heads,
    int64_t channels, int64_t levels, int64_t points) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row =
      (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int64_t h = row % heads, b = row / (num_query * heads);
  const int64_t LP = levels * points;
  const scalar_t *l_ptr = loc + row * LP * 2;
  const scalar_t *w_ptr = attn + row * LP;
  for (int64_t c0 = 0; c0 < channels; c0 += kWarp) {
    const int64_t c = c0 + lane;
    acc_t acc = 0;
    for (int64_t l = 0; l < levels; ++l) {
      const int64_t hl = shapes[2 * l], wl = shapes[2 * l + 1];
      const scalar_t *v_level =
          value + ((b * num_value + starts[l]) * heads + h) * channels;
      for (int64_t p = 0; p < points; ++p) {
        const int64_t s = l * points + p;
        const acc_t x = static_cast<acc_t>(l_ptr[2 * s]) * wl - acc_t(0.5);
        const acc_t y = static_cast<acc_t>(l_ptr[2 * s + 1]) * hl - acc_t(0.5);
        const acc_t aw = static_cast<acc_t>(w_ptr[s]);
        CornerGpu<acc_t> cs[4];
        corners(x, y, hl, wl, cs);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (cs[k].valid && c < channels)
            acc += aw * cs[k].w *
                   static_cast<acc_t>(
                       v_level[cs[k].pixel * heads * channels + c]);
        }
      }
    }
    if (c < channels) output[row * channels + c] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
__global__ void msda_backward_kernel(
    const scalar_t *__restrict__ value, const int64_t *__restrict__ shapes,
    const int64_t *__restrict__ starts, const scalar_t *__restrict__ loc,
    const scalar_t *__restrict__ attn, const scalar_t *__restrict__ grad_out,
    at::opmath_type<scalar_t> *__restrict__ grad_value,
    scalar_t *__restrict__ grad_loc, scalar_t *__restrict__ grad_attn,
    int64_t rows, int64_t num_query, int64_t num_value, int64_t heads,
    int64_t channels, int64_t levels, int64_t points) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row =
      (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warps exit together
  const int64_t h = row % heads, b = row / (num_query * heads);
  const int64_t LP = levels * points;
  const scalar_t *l_ptr = loc + row * LP * 2;
  const scalar_t *w_ptr = attn + row * LP;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t hl = shapes[2 * l], wl = shapes[2 * l + 1];
    const int64_t level_offset =
        ((b * num_value + starts[l]) * heads + h) * channels;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t s = l * points + p;
      const acc_t x = static_cast<acc_t>(l_ptr[2 * s]) * wl - acc_t(0.5);
      const acc_t y = static_cast<acc_t>(l_ptr[2 * s + 1]) * hl - acc_t(0.5);
      const acc_t aw = static_cast<acc_t>(w_ptr[s]);
      CornerGpu<acc_t> cs[4];
      corners(x, y, hl, wl, cs);
      acc_t g_attn = 0, g_x = 0, g_y = 0;
      for (int64_t c = lane; c < channels; c += kWarp) {
        const acc_t go = static_cast<acc_t>(grad_out[row * channels + c]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (!cs[k].valid) continue;
          const int64_t idx = level_offset + cs[k].pixel * heads * channels + c;
          const acc_t dot = go * static_cast<acc_t>(value[idx]);
          g_attn += cs[k].w * dot;
          g_x += cs[k].dw_dx * dot;
          g_y += cs[k].dw_dy * dot;
          gpuAtomicAdd(grad_value + idx, aw * cs[k].w * go);
        }
      }
      g_attn = warp_sum(g_attn);
      g_x = warp_sum(g_x);
      g_y = warp_sum(g_y);
      if (lane == 0) {
        grad_attn[row * LP + s] = static_cast<scalar_t>(g_attn);
        grad_loc[(row * LP + s) * 2] = static_cast<scalar_t>(aw * wl * g_x);
        grad_loc[(row * LP + s) * 2 + 1] =
            static_cast<scalar_t>(aw * hl * g_y);
      }
    }
  }
}

unsigned int blocks_for(int64_t rows) {
  return static_cast<unsigned int>((rows * kWarp + kThreads - 1) / kThreads);
}

void check_cuda_inputs(const at::Tensor &value,
                       const at::Tensor &spatial_shapes,
                       const at::Tensor &level_start_index,
                       const at::Tensor &sampling_loc,
                       const at::Tensor &attn_weight) {
  for (const at::Tensor *t : {&value, &spatial_shapes, &level_start_index,
                              &sampling_loc, &attn_weight}) {
    TORCH_CHECK(t->is_cuda() && t->device() == value.device(),
                "msda: all inputs must be on ", value.device());
    TORCH_CHECK(t->is_contiguous(), "msda: inputs must be contiguous");
  }
  TORCH_CHECK(value.dim() == 4 && sampling_loc.dim() == 6 &&
                  attn_weight.dim() == 5,
              "msda: wrong number of dimensions");
  TORCH_CHECK(sampling_loc.scalar_type() == value.scalar_type() &&
                  attn_weight.scalar_type() == value.scalar_type(),
              "msda: value, sampling_loc and attn_weight dtypes differ");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "msda: spatial_shapes and level_start_index must be int64");
}

}  // namespace

at::Tensor msda_forward_cuda(const at::Tensor &value,
                             const at::Tensor &spatial_shapes,
                             const at::Tensor &level_start_index,
                             const at::Tensor &sampling_loc,
                             const at::Tensor &attn_weight) {
  check_cuda_inputs(value, spatial_shapes, level_start_index, sampling_loc,
                    attn_weight);
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t batch = value.size(0), num_value = value.size(1),
                heads = value.size(2), channels = value.size(3),
                num_query = sampling_loc.size(1),
                levels = sampling_loc.size(3), points = sampling_loc.size(4);
  auto output =
      at::empty({batch, num_query, heads * channels}, value.options());
  const int64_t rows = batch * num_query * heads;
  if (rows == 0) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "msda_forward_cuda", [&] {
        msda_forward_kernel<scalar_t>
            <<<blocks_for(rows), kThreads, 0,
               c10::cuda::getCurrentCUDAStream()>>>(
                value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                level_start_index.data_ptr<int64_t>(),
                sampling_loc.data_ptr<scalar_t>(),
                attn_weight.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
                rows, num_query, num_value, heads, channels, levels, points);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

std::vector<at::Tensor> msda_backward_cuda(const at::Tensor &value,
                                           const at::Tensor &spatial_shapes,
                                           const at::Tensor &level_start_index,
                                           const at::Tensor &sampling_loc,
                                           const at::Tensor &attn_weight,
                                           const at::Tensor &grad_output,
                                           bool deterministic) {
  TORCH_CHECK(!deterministic,
              "vitdense msda_backward on CUDA uses atomicAdd and has no "
              "deterministic implementation yet; disable "
              "torch.use_deterministic_algorithms or run on CPU");
  check_cuda_inputs(value, spatial_shapes, level_start_index, sampling_loc,
                    attn_weight);
  TORCH_CHECK(grad_output.is_cuda() && grad_output.is_contiguous() &&
                  grad_output.scalar_type() == value.scalar_type(),
              "msda: grad_output must be contiguous, on the device and "
              "dtype of value");
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t batch = value.size(0), num_value = value.size(1),
                heads = value.size(2), channels = value.size(3),
                num_query = sampling_loc.size(1),
                levels = sampling_loc.size(3), points = sampling_loc.size(4);
  const auto acc_type = at::toOpMathType(value.scalar_type());
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(acc_type));
  auto grad_loc = at::zeros_like(sampling_loc);
  auto grad_attn = at::zeros_like(attn_weight);
  const int64_t rows = batch * num_query * heads;
  if (rows > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "msda_backward_cuda",
        [&] {
          msda_backward_kernel<scalar_t>
              <<<blocks_for(rows), kThreads, 0,
                 c10::cuda::getCurrentCUDAStream()>>>(
                  value.data_ptr<scalar_t>(),
                  spatial_shapes.data_ptr<int64_t>(),
                  level_start_index.data_ptr<int64_t>(),
                  sampling_loc.data_ptr<scalar_t>(),
                  attn_weight.data_ptr<scalar_t>(),
                  grad_output.data_ptr<scalar_t>(),
                  grad_value.data_ptr<at::opmath_type<scalar_t>>(),
                  grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(),
                  rows, num_query, num_value, heads, channels, levels, points);
        });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace vitdense
