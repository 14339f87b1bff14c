// Math shared by the CPU and CUDA kernels (compiled as host code by g++ and
// as host + device code by nvcc), so the two backends cannot drift apart:
// MSDA's bilinear corners, the fused softmax of its attention weights, and
// the Cephes sin/cos of the relation bias.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define VITDENSE_HD __host__ __device__ __forceinline__
#else  // always inlined, also into relation_cpu.cpp's AVX2 loops
#define VITDENSE_HD inline __attribute__((always_inline))
#endif

namespace vitdense {

// One bilinear corner of a sampling point: flat pixel index in the level,
// the interpolation weight and its derivatives along x and y.
template <typename acc_t>
struct Corner {
  int64_t pixel;
  acc_t w, dw_dx, dw_dy;
};

// Pixel coordinate of a normalised location on a map of `size` pixels:
// the align_corners=False convention of grid_sample (pixel = loc * size -
// 0.5).
template <typename acc_t>
VITDENSE_HD acc_t to_pixel(acc_t loc, int64_t size) {
  return loc * static_cast<acc_t>(size) - acc_t(0.5);
}

// The in-bounds bilinear corners of point (x, y) on an h x w map with zero
// padding, in the order (y0, x0), (y0, x0 + 1), (y0 + 1, x0),
// (y0 + 1, x0 + 1); returns how many (0 to 4) were written to `out`.
template <typename acc_t>
VITDENSE_HD int bilinear_corners(acc_t x, acc_t y, int64_t h, int64_t w,
                                 Corner<acc_t> *out) {
  using std::floor;
  if (!(y > -1 && x > -1 && y < h && x < w)) return 0;
  const acc_t yf = floor(y), xf = floor(x);
  const int64_t y0 = static_cast<int64_t>(yf), x0 = static_cast<int64_t>(xf);
  const acc_t ly = y - yf, lx = x - xf, hy = 1 - ly, hx = 1 - lx;
  int n = 0;
  if (y0 >= 0 && x0 >= 0) out[n++] = {y0 * w + x0, hy * hx, -hy, -hx};
  if (y0 >= 0 && x0 + 1 < w) out[n++] = {y0 * w + x0 + 1, hy * lx, hy, -lx};
  if (y0 + 1 < h && x0 >= 0) out[n++] = {(y0 + 1) * w + x0, ly * hx, -ly, hx};
  if (y0 + 1 < h && x0 + 1 < w)
    out[n++] = {(y0 + 1) * w + x0 + 1, ly * lx, ly, lx};
  return n;
}

// Fused softmax of one (query, head)'s L * P attention logits: p_s =
// exp(z_s - max) / sum, with max and sum computed once per row. The
// gradient of a loss through it is dz_s = p_s * (dp_s - sum_t p_t dp_t).
// The CUDA kernel keeps a row's dp_s in registers, at most this many.
constexpr int kMaxSoftmaxPoints = 64;
template <typename acc_t>
VITDENSE_HD acc_t softmax_prob(acc_t logit, acc_t max, acc_t inv_sum) {
  using std::exp;
  return exp(logit - max) * inv_sum;
}

// max and 1 / sum_s exp(z_s - max) of the n logits of one row, serially.
template <typename acc_t, typename scalar_t>
VITDENSE_HD void softmax_stats(const scalar_t *logits, int64_t n, acc_t *max,
                               acc_t *inv_sum) {
  using std::exp;
  acc_t m = static_cast<acc_t>(logits[0]);
  for (int64_t s = 1; s < n; ++s) {
    const acc_t z = static_cast<acc_t>(logits[s]);
    m = z > m ? z : m;
  }
  acc_t sum = 0;
  for (int64_t s = 0; s < n; ++s)
    sum += exp(static_cast<acc_t>(logits[s]) - m);
  *max = m;
  *inv_sum = acc_t(1) / sum;
}

// sin and cos of x for |x| <= kFastSinCosLimit: Cody-Waite reduction by
// pi/2 and the Cephes sinf/cosf minimax polynomials. The reduction's
// subtractions are rounded explicitly on the device so --use_fast_math
// cannot contract them; larger |x| must use libm.
constexpr float kFastSinCosLimit = 8192.f;

VITDENSE_HD void cephes_sincosf(float x, float *s, float *c) {
  const float jf = x * 0.63661977236758134f;
#ifdef __CUDA_ARCH__
  const int j = __float2int_rn(jf);
  const float fj = static_cast<float>(j);
  const float r = __fsub_rn(__fsub_rn(__fsub_rn(x, __fmul_rn(fj, 1.5703125f)),
                                      __fmul_rn(fj, 4.837512969970703125e-4f)),
                            __fmul_rn(fj, 7.54978995489188216e-8f));
#else
  const int j = static_cast<int>(jf + (jf >= 0.f ? 0.5f : -0.5f));
  const float fj = static_cast<float>(j);
  const float r = ((x - fj * 1.5703125f) - fj * 4.837512969970703125e-4f) -
                  fj * 7.54978995489188216e-8f;
#endif
  const float z = r * r;
  const float sp =
      ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) *
          z * r + r;
  const float cp = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                    4.166664568298827e-2f) * z * z - 0.5f * z + 1.f;
  const int q = j & 3;
  const float sv = (q & 1) ? cp : sp;
  const float cv = (q & 1) ? sp : cp;
  *s = (q & 2) ? -sv : sv;
  *c = ((q + 1) & 2) ? -cv : cv;
}

}  // namespace vitdense
