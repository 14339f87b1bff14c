// Multi-scale deformable attention on CUDA (Deformable DETR,
// arXiv:2010.04159); same semantics as msda_cpu.cpp, and the same corner and
// softmax math (kernel_math.h). Accumulation in at::opmath_type (fp32 for
// half/bf16).
//
// Forward: when the head's channels fit, a few lanes per (batch, query,
// head) with 16-byte vector loads (msda_forward_vec_kernel); otherwise, as
// the backward, one warp per (batch, query, head) whose lanes walk the
// channels, so every bilinear corner is one coalesced row read. With
// `softmax` the attention weights are logits and their softmax over the
// row's L * P entries is fused: the warp reduces max and sum with shuffles,
// and the backward keeps the row's dp_s in registers (lane s % 32) to form
// dz = p (dp - p . dp). The backward reduces the sampling-location and
// attention-weight gradients with warp shuffles (no shared memory, no
// __syncthreads). grad_value is either scattered with atomics into an
// opmath-typed buffer (fast, nondeterministic) or, with `deterministic`,
// the kernel writes every in-bounds bilinear tap as (value row,
// coefficient), the taps are stably sorted by value row, and one warp per
// row of value sums its taps in that fixed order: bit-identical results, no
// atomics. Shapes are read from device memory, so nothing here synchronises
// with the host.
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>

#include "kernel_math.h"
#include "vitdense_ops.h"

namespace vitdense {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kSoftmaxRegs = kMaxSoftmaxPoints / kWarp;
// Key of a tap that falls outside the map (sorted last, never summed).
constexpr int64_t kNoPixel = std::numeric_limits<int64_t>::max();

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_max(acc_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// max and 1 / sum(exp(z - max)) of one row's LP logits, reduced across the
// warp (every lane gets them); (0, 1) without softmax.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void warp_softmax_stats(const scalar_t *w_ptr,
                                              int64_t LP, int lane,
                                              bool softmax, acc_t *max_out,
                                              acc_t *inv_sum_out) {
  if (!softmax) {
    *max_out = 0;
    *inv_sum_out = 1;
    return;
  }
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  for (int64_t s = lane; s < LP; s += kWarp)
    m = max(m, static_cast<acc_t>(w_ptr[s]));
  m = warp_max(m);
  acc_t sum = 0;
  for (int64_t s = lane; s < LP; s += kWarp)
    sum += exp(static_cast<acc_t>(w_ptr[s]) - m);
  *max_out = m;
  *inv_sum_out = acc_t(1) / warp_sum(sum);
}

template <typename acc_t>
__device__ __forceinline__ acc_t attention(acc_t weight, bool softmax,
                                           acc_t max, acc_t inv_sum) {
  return softmax ? softmax_prob(weight, max, inv_sum) : weight;
}

template <typename scalar_t>
__global__ void msda_forward_kernel(
    const scalar_t *__restrict__ value, const int64_t *__restrict__ shapes,
    const int64_t *__restrict__ starts, const scalar_t *__restrict__ loc,
    const scalar_t *__restrict__ attn, scalar_t *__restrict__ output,
    int64_t rows, int64_t num_query, int64_t num_value, int64_t heads,
    int64_t channels, int64_t levels, int64_t points, bool softmax) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row =
      (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warps exit together
  const int64_t h = row % heads, b = row / (num_query * heads);
  const int64_t LP = levels * points;
  const scalar_t *l_ptr = loc + row * LP * 2;
  const scalar_t *w_ptr = attn + row * LP;
  acc_t w_max, w_inv_sum;
  warp_softmax_stats(w_ptr, LP, lane, softmax, &w_max, &w_inv_sum);
  for (int64_t c0 = 0; c0 < channels; c0 += kWarp) {
    const int64_t c = c0 + lane;
    acc_t acc = 0;
    for (int64_t l = 0; l < levels; ++l) {
      const int64_t hl = shapes[2 * l], wl = shapes[2 * l + 1];
      const scalar_t *v_level =
          value + ((b * num_value + starts[l]) * heads + h) * channels;
      for (int64_t p = 0; p < points; ++p) {
        const int64_t s = l * points + p;
        const acc_t x = to_pixel(static_cast<acc_t>(l_ptr[2 * s]), wl);
        const acc_t y = to_pixel(static_cast<acc_t>(l_ptr[2 * s + 1]), hl);
        const acc_t aw = attention(static_cast<acc_t>(w_ptr[s]), softmax,
                                   w_max, w_inv_sum);
        Corner<acc_t> cs[4];
        const int n = bilinear_corners(x, y, hl, wl, cs);
        for (int k = 0; k < n; ++k) {
          if (c < channels)
            acc += aw * cs[k].w *
                   static_cast<acc_t>(
                       v_level[cs[k].pixel * heads * channels + c]);
        }
      }
    }
    if (c < channels) output[row * channels + c] = static_cast<scalar_t>(acc);
  }
}

// Channels of one lane in one 16-byte load and store.
template <typename scalar_t, int V>
struct alignas(sizeof(scalar_t) * V) Pack {
  scalar_t v[V];
};

// Vectorised forward: each lane owns V = 16 / sizeof(scalar_t) consecutive
// channels (one 128-bit load per corner), a row takes channels / V lanes
// and a warp 32 * V / channels rows, so each sample's location, softmax and
// corner math is done by channels / V lanes instead of 32. Used when
// channels / V divides 32 and value is 16-byte aligned (head_dims 32 in
// fp32: 8 lanes, 4 rows per warp; in fp16/bf16: 4 lanes, 8 rows).
template <typename scalar_t, int V>
__global__ void msda_forward_vec_kernel(
    const scalar_t *__restrict__ value, const int64_t *__restrict__ shapes,
    const int64_t *__restrict__ starts, const scalar_t *__restrict__ loc,
    const scalar_t *__restrict__ attn, scalar_t *__restrict__ output,
    int64_t rows, int64_t num_query, int64_t num_value, int64_t heads,
    int64_t channels, int64_t levels, int64_t points, bool softmax) {
  using acc_t = at::opmath_type<scalar_t>;
  using pack_t = Pack<scalar_t, V>;
  const int64_t lanes = channels / V;
  const int64_t thread =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = thread / lanes;
  if (row >= rows) return;  // no shuffles below: partial warps are fine
  const int64_t c = (thread % lanes) * V;
  const int64_t h = row % heads, b = row / (num_query * heads);
  const int64_t LP = levels * points;
  const scalar_t *l_ptr = loc + row * LP * 2;
  const scalar_t *w_ptr = attn + row * LP;
  acc_t w_max = 0, w_inv_sum = 1;
  if (softmax) softmax_stats(w_ptr, LP, &w_max, &w_inv_sum);
  acc_t acc[V] = {};
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t hl = shapes[2 * l], wl = shapes[2 * l + 1];
    const scalar_t *v_level =
        value + ((b * num_value + starts[l]) * heads + h) * channels + c;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t s = l * points + p;
      const acc_t x = to_pixel(static_cast<acc_t>(l_ptr[2 * s]), wl);
      const acc_t y = to_pixel(static_cast<acc_t>(l_ptr[2 * s + 1]), hl);
      const acc_t aw = attention(static_cast<acc_t>(w_ptr[s]), softmax,
                                 w_max, w_inv_sum);
      Corner<acc_t> cs[4];
      const int n = bilinear_corners(x, y, hl, wl, cs);
      for (int k = 0; k < n; ++k) {
        const pack_t pv = *reinterpret_cast<const pack_t *>(
            v_level + cs[k].pixel * heads * channels);
        const acc_t wk = aw * cs[k].w;
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] += wk * static_cast<acc_t>(pv.v[j]);
      }
    }
  }
  pack_t out;
#pragma unroll
  for (int j = 0; j < V; ++j) out.v[j] = static_cast<scalar_t>(acc[j]);
  *reinterpret_cast<pack_t *>(output + row * channels + c) = out;
}

// Whether msda_forward_vec_kernel<scalar_t, V> can run these tensors.
template <int V>
bool vectorisable(const at::Tensor &value, const at::Tensor &output) {
  const int64_t channels = value.size(3), lanes = channels / V;
  return channels % V == 0 && lanes >= 1 && kWarp % lanes == 0 &&
         reinterpret_cast<uintptr_t>(value.data_ptr()) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(output.data_ptr()) % 16 == 0;
}

// Gradients of sampling_loc and attn_weight per row; grad_value by atomics
// (kAtomic) or, else, the row's taps as (value row key, coefficient) at
// taps[(row * LP + s) * 4 + k].
template <typename scalar_t, bool kAtomic>
__global__ void msda_backward_kernel(
    const scalar_t *__restrict__ value, const int64_t *__restrict__ shapes,
    const int64_t *__restrict__ starts, const scalar_t *__restrict__ loc,
    const scalar_t *__restrict__ attn, const scalar_t *__restrict__ grad_out,
    at::opmath_type<scalar_t> *__restrict__ grad_value,
    int64_t *__restrict__ tap_key,
    at::opmath_type<scalar_t> *__restrict__ tap_coef,
    scalar_t *__restrict__ grad_loc, scalar_t *__restrict__ grad_attn,
    int64_t rows, int64_t num_query, int64_t num_value, int64_t heads,
    int64_t channels, int64_t levels, int64_t points, bool softmax) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row =
      (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warps exit together
  const int64_t h = row % heads, b = row / (num_query * heads);
  const int64_t LP = levels * points;
  const scalar_t *l_ptr = loc + row * LP * 2;
  const scalar_t *w_ptr = attn + row * LP;
  acc_t w_max, w_inv_sum;
  warp_softmax_stats(w_ptr, LP, lane, softmax, &w_max, &w_inv_sum);
  acc_t dp[kSoftmaxRegs] = {};  // lane s % 32 keeps dp_s (softmax only)
  acc_t p_dot_dp = 0;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t hl = shapes[2 * l], wl = shapes[2 * l + 1];
    const int64_t level_row = (b * num_value + starts[l]) * heads + h;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t s = l * points + p;
      const acc_t x = to_pixel(static_cast<acc_t>(l_ptr[2 * s]), wl);
      const acc_t y = to_pixel(static_cast<acc_t>(l_ptr[2 * s + 1]), hl);
      const acc_t aw = attention(static_cast<acc_t>(w_ptr[s]), softmax,
                                 w_max, w_inv_sum);
      Corner<acc_t> cs[4];
      const int n = bilinear_corners(x, y, hl, wl, cs);
      if (!kAtomic && lane < 4) {
        const int64_t tap = (row * LP + s) * 4 + lane;
        tap_key[tap] =
            lane < n ? level_row + cs[lane].pixel * heads : kNoPixel;
        tap_coef[tap] = lane < n ? aw * cs[lane].w : acc_t(0);
      }
      acc_t g_attn = 0, g_x = 0, g_y = 0;
      for (int64_t c = lane; c < channels; c += kWarp) {
        const acc_t go = static_cast<acc_t>(grad_out[row * channels + c]);
        for (int k = 0; k < n; ++k) {
          const int64_t idx = (level_row + cs[k].pixel * heads) * channels + c;
          const acc_t dot = go * static_cast<acc_t>(value[idx]);
          g_attn += cs[k].w * dot;
          g_x += cs[k].dw_dx * dot;
          g_y += cs[k].dw_dy * dot;
          if (kAtomic) gpuAtomicAdd(grad_value + idx, aw * cs[k].w * go);
        }
      }
      g_attn = warp_sum(g_attn);
      g_x = warp_sum(g_x);
      g_y = warp_sum(g_y);
      if (softmax) {
        p_dot_dp += aw * g_attn;
        if (lane == s % kWarp) dp[s / kWarp] = g_attn;
      }
      if (lane == 0) {
        if (!softmax) grad_attn[row * LP + s] = static_cast<scalar_t>(g_attn);
        grad_loc[(row * LP + s) * 2] = static_cast<scalar_t>(aw * wl * g_x);
        grad_loc[(row * LP + s) * 2 + 1] =
            static_cast<scalar_t>(aw * hl * g_y);
      }
    }
  }
  if (softmax) {
#pragma unroll
    for (int r = 0; r < kSoftmaxRegs; ++r) {
      const int64_t s = r * kWarp + lane;
      if (s < LP) {
        const acc_t prob =
            softmax_prob(static_cast<acc_t>(w_ptr[s]), w_max, w_inv_sum);
        grad_attn[row * LP + s] =
            static_cast<scalar_t>(prob * (dp[r] - p_dot_dp));
      }
    }
  }
}

// Deterministic grad_value: one warp per sorted tap that starts a run of
// equal keys (one row of value); it sums the run's coefficient * grad_out
// rows in sorted (= original tap) order and writes the row once.
template <typename scalar_t>
__global__ void msda_gather_grad_value_kernel(
    const int64_t *__restrict__ keys, const int64_t *__restrict__ order,
    const at::opmath_type<scalar_t> *__restrict__ tap_coef,
    const scalar_t *__restrict__ grad_out,
    at::opmath_type<scalar_t> *__restrict__ grad_value, int64_t taps,
    int64_t taps_per_row, int64_t channels) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t i =
      (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (i >= taps) return;
  const int64_t key = keys[i];
  if (key == kNoPixel || (i > 0 && keys[i - 1] == key)) return;
  for (int64_t c = lane; c < channels; c += kWarp) {
    acc_t acc = 0;
    for (int64_t j = i; j < taps && keys[j] == key; ++j) {
      const int64_t tap = order[j];
      const int64_t row = tap / taps_per_row;
      acc += tap_coef[tap] * static_cast<acc_t>(grad_out[row * channels + c]);
    }
    grad_value[key * channels + c] = acc;
  }
}

unsigned int blocks_for(int64_t warps) {
  return static_cast<unsigned int>((warps * kWarp + kThreads - 1) / kThreads);
}

// Metadata checks only (no device data is read, so no synchronisation):
// the values of spatial_shapes / level_start_index are checked by the
// Python wrapper on the host or with torch._assert_async on the device.
void check_cuda_inputs(const at::Tensor &value,
                       const at::Tensor &spatial_shapes,
                       const at::Tensor &level_start_index,
                       const at::Tensor &sampling_loc,
                       const at::Tensor &attn_weight, bool softmax) {
  for (const at::Tensor *t : {&value, &spatial_shapes, &level_start_index,
                              &sampling_loc, &attn_weight}) {
    TORCH_CHECK(t->is_cuda() && t->device() == value.device(),
                "msda: all inputs must be on ", value.device());
    TORCH_CHECK(t->is_contiguous(), "msda: inputs must be contiguous");
  }
  TORCH_CHECK(value.dim() == 4 && sampling_loc.dim() == 6 &&
                  attn_weight.dim() == 5 && spatial_shapes.dim() == 2 &&
                  level_start_index.dim() == 1,
              "msda: wrong number of dimensions");
  TORCH_CHECK(sampling_loc.scalar_type() == value.scalar_type() &&
                  attn_weight.scalar_type() == value.scalar_type(),
              "msda: value, sampling_loc and attn_weight dtypes differ");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "msda: spatial_shapes and level_start_index must be int64");
  const int64_t levels = sampling_loc.size(3);
  TORCH_CHECK(sampling_loc.size(0) == value.size(0) &&
                  sampling_loc.size(2) == value.size(2) &&
                  sampling_loc.size(5) == 2 &&
                  attn_weight.sizes() == sampling_loc.sizes().slice(0, 5) &&
                  spatial_shapes.size(0) == levels &&
                  spatial_shapes.size(1) == 2 &&
                  level_start_index.size(0) == levels,
              "msda: shapes of the inputs do not match");
  TORCH_CHECK(!softmax || levels * sampling_loc.size(4) <= kMaxSoftmaxPoints,
              "msda: the fused softmax takes at most ", kMaxSoftmaxPoints,
              " levels * points");
}

}  // namespace

at::Tensor msda_forward_cuda(const at::Tensor &value,
                             const at::Tensor &spatial_shapes,
                             const at::Tensor &level_start_index,
                             const at::Tensor &sampling_loc,
                             const at::Tensor &attn_weight, bool softmax) {
  check_cuda_inputs(value, spatial_shapes, level_start_index, sampling_loc,
                    attn_weight, softmax);
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
        constexpr int V = 16 / sizeof(scalar_t);
        const auto stream = c10::cuda::getCurrentCUDAStream();
        if (vectorisable<V>(value, output)) {
          const int64_t threads = rows * (channels / V);
          msda_forward_vec_kernel<scalar_t, V>
              <<<static_cast<unsigned int>((threads + kThreads - 1) /
                                           kThreads),
                 kThreads, 0, stream>>>(
                  value.data_ptr<scalar_t>(),
                  spatial_shapes.data_ptr<int64_t>(),
                  level_start_index.data_ptr<int64_t>(),
                  sampling_loc.data_ptr<scalar_t>(),
                  attn_weight.data_ptr<scalar_t>(),
                  output.data_ptr<scalar_t>(), rows, num_query, num_value,
                  heads, channels, levels, points, softmax);
        } else {
          msda_forward_kernel<scalar_t><<<blocks_for(rows), kThreads, 0,
                                          stream>>>(
              value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
              level_start_index.data_ptr<int64_t>(),
              sampling_loc.data_ptr<scalar_t>(),
              attn_weight.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
              rows, num_query, num_value, heads, channels, levels, points,
              softmax);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::vector<at::Tensor> msda_backward_cuda(const at::Tensor &value,
                                           const at::Tensor &spatial_shapes,
                                           const at::Tensor &level_start_index,
                                           const at::Tensor &sampling_loc,
                                           const at::Tensor &attn_weight,
                                           const at::Tensor &grad_output,
                                           bool softmax, bool deterministic) {
  check_cuda_inputs(value, spatial_shapes, level_start_index, sampling_loc,
                    attn_weight, softmax);
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
  const int64_t taps_per_row = levels * points * 4;
  const int64_t taps = deterministic ? rows * taps_per_row : 0;
  auto tap_key = at::empty({taps}, value.options().dtype(at::kLong));
  auto tap_coef = at::empty({taps}, value.options().dtype(acc_type));
  if (rows > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "msda_backward_cuda",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          auto kernel = deterministic ? msda_backward_kernel<scalar_t, false>
                                      : msda_backward_kernel<scalar_t, true>;
          kernel<<<blocks_for(rows), kThreads, 0,
                   c10::cuda::getCurrentCUDAStream()>>>(
              value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
              level_start_index.data_ptr<int64_t>(),
              sampling_loc.data_ptr<scalar_t>(),
              attn_weight.data_ptr<scalar_t>(),
              grad_output.data_ptr<scalar_t>(), grad_value.data_ptr<acc_t>(),
              tap_key.data_ptr<int64_t>(), tap_coef.data_ptr<acc_t>(),
              grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(),
              rows, num_query, num_value, heads, channels, levels, points,
              softmax);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          if (deterministic) {
            // a stable sort keeps equal keys in tap order: a fixed sum order
            auto sorted = at::sort(tap_key, /*stable=*/true, 0, false);
            msda_gather_grad_value_kernel<scalar_t>
                <<<blocks_for(taps), kThreads, 0,
                   c10::cuda::getCurrentCUDAStream()>>>(
                    std::get<0>(sorted).data_ptr<int64_t>(),
                    std::get<1>(sorted).data_ptr<int64_t>(),
                    tap_coef.data_ptr<acc_t>(),
                    grad_output.data_ptr<scalar_t>(),
                    grad_value.data_ptr<acc_t>(), taps, taps_per_row,
                    channels);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        });
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace vitdense
