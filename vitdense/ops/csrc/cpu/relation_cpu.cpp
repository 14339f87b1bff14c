// Fused position relation bias of Relation-DETR (arXiv:2407.11699) on CPU.
//
// For boxes a = src[b, i], c = tgt[b, j] (cxcywh) the official code builds
//   e = [log(|dx| / (w_a + eps) + 1), log(|dy| / (h_a + eps) + 1),
//        log((w_a + eps) / (w_c + eps)), log((h_a + eps) / (h_c + eps))],
// a sine embedding of each feature (F dims: sin/cos of e * scale / dim_t,
// interleaved) and a 1x1 conv + ReLU to `heads` channels. Here the 4F-dim
// embedding only ever exists for a tile of 64 pairs in a stack buffer; the
// backward recomputes it and reduces grad_weight/grad_bias per chunk of
// rows, then sums the chunks in a fixed order (deterministic).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "vitdense_ops.h"

namespace vitdense {
namespace {

constexpr int64_t kTile = 64;

// sin/cos for |x| <= kFastSinCosLimit: Cody-Waite reduction by pi/2 and
// minimax polynomials (Cephes sinf/cosf), written so the loop vectorises.
constexpr float kFastSinCosLimit = 8192.f;

void sincos_block(const float *__restrict__ x, float *__restrict__ s,
                  float *__restrict__ c, int64_t n) {
#pragma omp simd
  for (int64_t t = 0; t < n; ++t) {
    const float xv = x[t];
    const float jf = xv * 0.63661977236758134f;
    const int j = static_cast<int>(jf + (jf >= 0.f ? 0.5f : -0.5f));
    const float fj = static_cast<float>(j);
    const float r = ((xv - fj * 1.5703125f) - fj * 4.837512969970703125e-4f) -
                    fj * 7.54978995489188216e-8f;
    const float z = r * r;
    const float sp =
        ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) *
            z * r + r;
    const float cp = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                      4.166664568298827e-2f) * z * z - 0.5f * z + 1.f;
    const int q = j & 3;
    const float sv = (q & 1) ? cp : sp;
    const float cv = (q & 1) ? sp : cp;
    s[t] = (q & 2) ? -sv : sv;
    c[t] = ((q + 1) & 2) ? -cv : cv;
  }
}

void sincos_block(const double *x, double *s, double *c, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    s[t] = std::sin(x[t]);
    c[t] = std::cos(x[t]);
  }
}

template <typename T>
bool fast_ok(T max_arg) {
  return max_arg <= static_cast<T>(kFastSinCosLimit);
}
template <>
bool fast_ok<double>(double) {
  return true;  // the double path always uses libm
}

// Geometry of one tile: the 4 relation features of pairs (i, j0 + t).
template <typename T>
void relation_features(const T *a, const T *tgt, int64_t n, T eps,
                       T feat[4][kTile]) {
  const T wa = a[2] + eps, ha = a[3] + eps;
  for (int64_t t = 0; t < n; ++t) {
    const T *c = tgt + 4 * t;
    feat[0][t] = std::log(std::abs(a[0] - c[0]) / wa + T(1));
    feat[1][t] = std::log(std::abs(a[1] - c[1]) / ha + T(1));
    feat[2][t] = std::log(wa / (c[2] + eps));
    feat[3][t] = std::log(ha / (c[3] + eps));
  }
}

// Sine embedding of a tile: emb[(k * F + 2 m + {0: sin, 1: cos}) * kTile + t].
template <typename T>
void sine_embed(T feat[4][kTile], int64_t n, const T *dim_t, int64_t half,
                T scale, T *emb) {
  T arg[kTile];
  const int64_t F = 2 * half;
  for (int k = 0; k < 4; ++k) {
    T max_abs = 0;
    for (int64_t t = 0; t < n; ++t) max_abs = std::max(max_abs, std::abs(feat[k][t]));
    const bool fast = fast_ok<T>(max_abs * scale / dim_t[0]);
    for (int64_t m = 0; m < half; ++m) {
      for (int64_t t = 0; t < n; ++t) arg[t] = (feat[k][t] * scale) / dim_t[m];
      T *s = emb + (k * F + 2 * m) * kTile;
      T *c = s + kTile;
      if (fast) {
        sincos_block(arg, s, c, n);
      } else {
        for (int64_t t = 0; t < n; ++t) {
          s[t] = std::sin(arg[t]);
          c[t] = std::cos(arg[t]);
        }
      }
    }
  }
}

struct RelDims {
  int64_t batch, n, m, heads, half, channels;
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
          8 * dim_t.size(0)};
}

template <typename T>
void forward_kernel(const RelDims &d, const T *src, const T *tgt,
                    const T *weight, const T *bias, const T *dim_t, T scale,
                    T eps, T *out) {
  const int64_t C = d.channels, H = d.heads;
  at::parallel_for(0, d.batch * d.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> emb_buf(C * kTile);
    T *emb = emb_buf.data();
    T feat[4][kTile];
    T acc[kTile];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / d.n, i = row % d.n;
      const T *a = src + row * 4;
      for (int64_t j0 = 0; j0 < d.m; j0 += kTile) {
        const int64_t n = std::min(kTile, d.m - j0);
        relation_features(a, tgt + (b * d.m + j0) * 4, n, eps, feat);
        sine_embed(feat, n, dim_t, d.half, scale, emb);
        for (int64_t h = 0; h < H; ++h) {
          const T *w = weight + h * C;
          for (int64_t t = 0; t < n; ++t) acc[t] = bias[h];
          for (int64_t c = 0; c < C; ++c) {
            const T wc = w[c];
            const T *e = emb + c * kTile;
#pragma omp simd
            for (int64_t t = 0; t < n; ++t) acc[t] += wc * e[t];
          }
          T *o = out + ((b * H + h) * d.n + i) * d.m + j0;
          for (int64_t t = 0; t < n; ++t) o[t] = acc[t] > T(0) ? acc[t] : T(0);
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const RelDims &d, const T *src, const T *tgt,
                     const T *output, const T *dim_t, const T *grad_out,
                     T scale, T eps, T *grad_weight, T *grad_bias) {
  const int64_t C = d.channels, H = d.heads, rows = d.batch * d.n;
  const int64_t chunks = std::min<int64_t>(rows, 256);
  std::vector<T> partial(chunks * H * (C + 1), T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> emb_buf(C * kTile), g_buf(H * kTile);
    T *emb = emb_buf.data(), *g = g_buf.data();
    T feat[4][kTile];
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      T *gw = partial.data() + chunk * H * (C + 1);
      T *gb = gw + H * C;
      const int64_t r0 = rows * chunk / chunks, r1 = rows * (chunk + 1) / chunks;
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t b = row / d.n, i = row % d.n;
        for (int64_t j0 = 0; j0 < d.m; j0 += kTile) {
          const int64_t n = std::min(kTile, d.m - j0);
          bool any = false;
          for (int64_t h = 0; h < H; ++h) {
            const int64_t off = ((b * H + h) * d.n + i) * d.m + j0;
            for (int64_t t = 0; t < n; ++t) {
              const T gv = output[off + t] > T(0) ? grad_out[off + t] : T(0);
              g[h * kTile + t] = gv;
              any = any || gv != T(0);
            }
          }
          if (!any) continue;
          relation_features(src + row * 4, tgt + (b * d.m + j0) * 4, n, eps,
                            feat);
          sine_embed(feat, n, dim_t, d.half, scale, emb);
          for (int64_t h = 0; h < H; ++h) {
            const T *gh = g + h * kTile;
            T sum = 0;
            for (int64_t t = 0; t < n; ++t) sum += gh[t];
            gb[h] += sum;
            for (int64_t c = 0; c < C; ++c) {
              const T *e = emb + c * kTile;
              T dot = 0;
#pragma omp simd reduction(+ : dot)
              for (int64_t t = 0; t < n; ++t) dot += gh[t] * e[t];
              gw[h * C + c] += dot;
            }
          }
        }
      }
    }
  });
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const T *gw = partial.data() + chunk * H * (C + 1);
    for (int64_t k = 0; k < H * C; ++k) grad_weight[k] += gw[k];
    for (int64_t h = 0; h < H; ++h) grad_bias[h] += gw[H * C + h];
  }
}

}  // namespace

at::Tensor relation_forward_cpu(const at::Tensor &src, const at::Tensor &tgt,
                                const at::Tensor &weight,
                                const at::Tensor &bias, const at::Tensor &dim_t,
                                double scale, double eps) {
  RelDims d = check_inputs(src, tgt, dim_t);
  d.heads = weight.size(0);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == d.channels &&
                  weight.is_contiguous() && bias.dim() == 1 &&
                  bias.size(0) == d.heads && bias.is_contiguous() &&
                  weight.scalar_type() == src.scalar_type() &&
                  bias.scalar_type() == src.scalar_type(),
              "relation: weight must be [heads, 8 * len(dim_t)], bias [heads]");
  auto out = at::empty({d.batch, d.heads, d.n, d.m}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "relation_forward_cpu", [&] {
    forward_kernel<scalar_t>(d, src.data_ptr<scalar_t>(),
                             tgt.data_ptr<scalar_t>(),
                             weight.data_ptr<scalar_t>(),
                             bias.data_ptr<scalar_t>(),
                             dim_t.data_ptr<scalar_t>(),
                             static_cast<scalar_t>(scale),
                             static_cast<scalar_t>(eps),
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
  auto grad_weight = at::zeros({d.heads, d.channels}, src.options());
  auto grad_bias = at::zeros({d.heads}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "relation_backward_cpu", [&] {
    backward_kernel<scalar_t>(
        d, src.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(),
        output.data_ptr<scalar_t>(), dim_t.data_ptr<scalar_t>(),
        grad_output.data_ptr<scalar_t>(), static_cast<scalar_t>(scale),
        static_cast<scalar_t>(eps), grad_weight.data_ptr<scalar_t>(),
        grad_bias.data_ptr<scalar_t>());
  });
  return {grad_weight, grad_bias};
}

}  // namespace vitdense
