// Multi-scale deformable attention on CPU (Deformable DETR, arXiv:2010.04159).
//
// Bilinear sampling with zero padding and the align_corners=False convention
// (pixel x = loc_x * W - 0.5), the semantics of mmcv's grid_sample-based
// multi_scale_deformable_attn_pytorch; the corner math is shared with the
// CUDA kernel (kernel_math.h). With `softmax`, attn_weight holds logits and
// the softmax over each (query, head)'s L * P weights is fused.
// Accumulation in at::opmath_type (fp32 for half/bf16). The forward runs in
// parallel over (batch, query); the backward over (batch, head), so every
// thread owns a disjoint slice of grad_value: no atomics, deterministic
// results. The taps of the next
// (query, head) are computed and their rows prefetched before the current
// ones are used, to overlap the random gathers.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "kernel_math.h"
#include "vitdense_ops.h"

namespace vitdense {
namespace {

struct Dims {
  int64_t batch, num_value, heads, channels, num_query, levels, points;
};

Dims check_inputs(const at::Tensor &value, const at::Tensor &spatial_shapes,
                  const at::Tensor &level_start_index,
                  const at::Tensor &sampling_loc,
                  const at::Tensor &attn_weight) {
  TORCH_CHECK(value.dim() == 4 && sampling_loc.dim() == 6 &&
                  attn_weight.dim() == 5 && spatial_shapes.dim() == 2 &&
                  level_start_index.dim() == 1,
              "msda: wrong number of dimensions");
  TORCH_CHECK(value.is_contiguous() && sampling_loc.is_contiguous() &&
                  attn_weight.is_contiguous() &&
                  spatial_shapes.is_contiguous() &&
                  level_start_index.is_contiguous(),
              "msda: inputs must be contiguous");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "msda: spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_loc.scalar_type() == value.scalar_type() &&
                  attn_weight.scalar_type() == value.scalar_type(),
              "msda: value, sampling_loc and attn_weight dtypes differ");
  Dims d{value.size(0),        value.size(1),        value.size(2),
         value.size(3),        sampling_loc.size(1), sampling_loc.size(3),
         sampling_loc.size(4)};
  TORCH_CHECK(sampling_loc.size(0) == d.batch && sampling_loc.size(2) == d.heads &&
                  sampling_loc.size(5) == 2,
              "msda: sampling_loc shape mismatch");
  TORCH_CHECK(attn_weight.size(0) == d.batch && attn_weight.size(1) == d.num_query &&
                  attn_weight.size(2) == d.heads && attn_weight.size(3) == d.levels &&
                  attn_weight.size(4) == d.points,
              "msda: attn_weight shape mismatch");
  TORCH_CHECK(spatial_shapes.size(0) == d.levels && spatial_shapes.size(1) == 2 &&
                  level_start_index.size(0) == d.levels,
              "msda: spatial_shapes/level_start_index shape mismatch");
  const int64_t *shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t *starts = level_start_index.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t l = 0; l < d.levels; ++l) {
    TORCH_CHECK(shapes[2 * l] > 0 && shapes[2 * l + 1] > 0 &&
                    starts[l] == total,
                "msda: spatial_shapes/level_start_index are inconsistent");
    total += shapes[2 * l] * shapes[2 * l + 1];
  }
  TORCH_CHECK(total == d.num_value,
              "msda: spatial_shapes do not sum to the value length");
  return d;
}

// Bilinear taps of one (query, head): value offsets with their weights.
// Built one (query, head) ahead of their use while prefetching the rows
// they read, so the random gathers overlap with the arithmetic.
template <typename acc_t>
struct Taps {
  std::vector<Corner<acc_t>> corners;  // pixel = element offset into value
  std::vector<int> count;              // taps per sampling point
  std::vector<acc_t> attn, scale_x, scale_y;
};

template <typename scalar_t, typename acc_t>
void build_taps(const Dims &d, const int64_t *shapes, const int64_t *starts,
                const scalar_t *loc, const scalar_t *attn, bool softmax,
                int64_t b,
                int64_t row, int64_t h, int64_t row_bytes,
                const scalar_t *prefetch_a, const acc_t *prefetch_b,
                Taps<acc_t> &taps) {
  const int64_t C = d.channels, pixel_stride = d.heads * C;
  const int64_t LP = d.levels * d.points;
  const scalar_t *l_ptr = loc + row * LP * 2;
  const scalar_t *w_ptr = attn + row * LP;
  Corner<acc_t> *out = taps.corners.data();
  acc_t max = 0, inv_sum = 1;
  if (softmax) softmax_stats(w_ptr, LP, &max, &inv_sum);
  for (int64_t l = 0; l < d.levels; ++l) {
    const int64_t hl = shapes[2 * l], wl = shapes[2 * l + 1];
    const int64_t level_offset =
        ((b * d.num_value + starts[l]) * d.heads + h) * C;
    for (int64_t p = 0; p < d.points; ++p) {
      const int64_t s = l * d.points + p;
      const acc_t x = to_pixel(static_cast<acc_t>(l_ptr[2 * s]), wl);
      const acc_t y = to_pixel(static_cast<acc_t>(l_ptr[2 * s + 1]), hl);
      const int n = bilinear_corners(x, y, hl, wl, out);
      for (int k = 0; k < n; ++k) {
        out[k].pixel = level_offset + out[k].pixel * pixel_stride;
        for (int64_t byte = 0; byte < row_bytes; byte += 64) {
          __builtin_prefetch(
              reinterpret_cast<const char *>(prefetch_a + out[k].pixel) + byte);
          if (prefetch_b != nullptr)
            __builtin_prefetch(
                reinterpret_cast<const char *>(prefetch_b + out[k].pixel) +
                byte);
        }
      }
      out += n;
      taps.count[s] = n;
      const acc_t weight = static_cast<acc_t>(w_ptr[s]);
      taps.attn[s] = softmax ? softmax_prob(weight, max, inv_sum) : weight;
      taps.scale_x[s] = static_cast<acc_t>(wl);
      taps.scale_y[s] = static_cast<acc_t>(hl);
    }
  }
}

template <typename acc_t>
void init_taps(const Dims &d, Taps<acc_t> &taps) {
  const int64_t LP = d.levels * d.points;
  taps.corners.resize(4 * LP);
  taps.count.resize(LP);
  taps.attn.resize(LP);
  taps.scale_x.resize(LP);
  taps.scale_y.resize(LP);
}

template <typename scalar_t>
void forward_kernel(const Dims &d, const scalar_t *value,
                    const int64_t *shapes, const int64_t *starts,
                    const scalar_t *loc, const scalar_t *attn, bool softmax,
                    scalar_t *output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = d.channels, LP = d.levels * d.points;
  const int64_t row_bytes = C * sizeof(scalar_t);
  const int64_t grain = std::max<int64_t>(1, 2048 / (d.heads * LP));
  at::parallel_for(0, d.batch * d.num_query * d.heads, grain * d.heads,
                   [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(C);
    acc_t *__restrict__ a = acc.data();
    Taps<acc_t> cur, next;
    init_taps(d, cur);
    init_taps(d, next);
    auto build = [&](int64_t row, Taps<acc_t> &taps) {
      const int64_t b = row / (d.num_query * d.heads), h = row % d.heads;
      build_taps<scalar_t, acc_t>(d, shapes, starts, loc, attn, softmax, b,
                                  row, h, row_bytes, value, nullptr, taps);
    };
    build(begin, cur);
    for (int64_t row = begin; row < end; ++row) {
      if (row + 1 < end) build(row + 1, next);
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const Corner<acc_t> *corner = cur.corners.data();
      for (int64_t s = 0; s < LP; ++s) {
        for (int k = 0; k < cur.count[s]; ++k, ++corner) {
          const acc_t wk = cur.attn[s] * corner->w;
          const scalar_t *__restrict__ v = value + corner->pixel;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) a[c] += wk * static_cast<acc_t>(v[c]);
        }
      }
      scalar_t *o = output + row * C;
      for (int64_t c = 0; c < C; ++c) o[c] = static_cast<scalar_t>(a[c]);
      std::swap(cur, next);
    }
  });
}

template <typename scalar_t>
void backward_kernel(const Dims &d, const scalar_t *value,
                     const int64_t *shapes, const int64_t *starts,
                     const scalar_t *loc, const scalar_t *attn, bool softmax,
                     const scalar_t *grad_out,
                     at::opmath_type<scalar_t> *grad_value,
                     scalar_t *grad_loc, scalar_t *grad_attn) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = d.channels, LP = d.levels * d.points;
  const int64_t row_bytes = C * sizeof(scalar_t);
  at::parallel_for(0, d.batch * d.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go_buf(C), dp(LP);
    acc_t *__restrict__ go = go_buf.data();
    Taps<acc_t> cur, next;
    init_taps(d, cur);
    init_taps(d, next);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / d.heads, h = bh % d.heads;
      auto build = [&](int64_t q, Taps<acc_t> &taps) {
        const int64_t row = (b * d.num_query + q) * d.heads + h;
        build_taps<scalar_t, acc_t>(d, shapes, starts, loc, attn, softmax, b,
                                    row, h, row_bytes, value, grad_value,
                                    taps);
      };
      build(0, cur);
      for (int64_t q = 0; q < d.num_query; ++q) {
        if (q + 1 < d.num_query) build(q + 1, next);
        const int64_t row = (b * d.num_query + q) * d.heads + h;
        const scalar_t *g = grad_out + row * C;
        for (int64_t c = 0; c < C; ++c) go[c] = static_cast<acc_t>(g[c]);
        scalar_t *gl_ptr = grad_loc + row * LP * 2;
        scalar_t *gw_ptr = grad_attn + row * LP;
        const Corner<acc_t> *corner = cur.corners.data();
        acc_t p_dot_dp = 0;  // sum_s p_s dp_s for the fused softmax
        for (int64_t s = 0; s < LP; ++s) {
          const acc_t aw = cur.attn[s];
          acc_t g_attn = 0, g_x = 0, g_y = 0;
          for (int k = 0; k < cur.count[s]; ++k, ++corner) {
            const scalar_t *__restrict__ v = value + corner->pixel;
            acc_t *__restrict__ gv = grad_value + corner->pixel;
            const acc_t wk = aw * corner->w;
            acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t c = 0; c < C; ++c) {
              dot += go[c] * static_cast<acc_t>(v[c]);
              gv[c] += wk * go[c];
            }
            g_attn += corner->w * dot;
            g_x += corner->dw_dx * dot;
            g_y += corner->dw_dy * dot;
          }
          dp[s] = g_attn;
          p_dot_dp += aw * g_attn;
          gl_ptr[2 * s] = static_cast<scalar_t>(aw * cur.scale_x[s] * g_x);
          gl_ptr[2 * s + 1] = static_cast<scalar_t>(aw * cur.scale_y[s] * g_y);
        }
        for (int64_t s = 0; s < LP; ++s)
          gw_ptr[s] = static_cast<scalar_t>(
              softmax ? cur.attn[s] * (dp[s] - p_dot_dp) : dp[s]);
        std::swap(cur, next);
      }
    }
  });
}

}  // namespace

at::Tensor msda_forward_cpu(const at::Tensor &value,
                            const at::Tensor &spatial_shapes,
                            const at::Tensor &level_start_index,
                            const at::Tensor &sampling_loc,
                            const at::Tensor &attn_weight, bool softmax) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index,
                              sampling_loc, attn_weight);
  TORCH_CHECK(!softmax || d.levels * d.points <= kMaxSoftmaxPoints,
              "msda: the fused softmax takes at most ", kMaxSoftmaxPoints,
              " levels * points");
  auto output =
      at::empty({d.batch, d.num_query, d.heads * d.channels}, value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "msda_forward_cpu", [&] {
        forward_kernel<scalar_t>(
            d, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
            level_start_index.data_ptr<int64_t>(),
            sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(),
            softmax, output.data_ptr<scalar_t>());
      });
  return output;
}

std::vector<at::Tensor> msda_backward_cpu(const at::Tensor &value,
                                          const at::Tensor &spatial_shapes,
                                          const at::Tensor &level_start_index,
                                          const at::Tensor &sampling_loc,
                                          const at::Tensor &attn_weight,
                                          const at::Tensor &grad_output,
                                          bool softmax) {
  const Dims d = check_inputs(value, spatial_shapes, level_start_index,
                              sampling_loc, attn_weight);
  TORCH_CHECK(!softmax || d.levels * d.points <= kMaxSoftmaxPoints,
              "msda: the fused softmax takes at most ", kMaxSoftmaxPoints,
              " levels * points");
  TORCH_CHECK(grad_output.is_contiguous() &&
                  grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == d.batch * d.num_query * d.heads * d.channels,
              "msda: grad_output must be a contiguous [B, Lq, H * D] tensor");
  const auto acc_type = at::toOpMathType(value.scalar_type());
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(acc_type));
  auto grad_loc = at::empty_like(sampling_loc);
  auto grad_attn = at::empty_like(attn_weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "msda_backward_cpu", [&] {
        backward_kernel<scalar_t>(
            d, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
            level_start_index.data_ptr<int64_t>(),
            sampling_loc.data_ptr<scalar_t>(), attn_weight.data_ptr<scalar_t>(),
            softmax, grad_output.data_ptr<scalar_t>(),
            grad_value.data_ptr<at::opmath_type<scalar_t>>(),
            grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>());
      });
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace vitdense
