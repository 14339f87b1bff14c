// Fused position relation bias of Relation-DETR (arXiv:2407.11699) on CUDA;
// same math and tiling as relation_cpu.cpp.
//
// One block per (batch, source box, tile of 64 target boxes): the block
// writes the tile's 4F-channel sine embedding to shared memory (the only
// place it ever exists), then projects it to `heads` channels. The backward
// recomputes the tile and accumulates grad_weight/grad_bias per block in
// shared memory, one entry per thread (no atomics), into a per-block
// partial buffer that is summed afterwards in a fixed order
// (deterministic). sin/cos are the CPU kernel's Cody-Waite reduction and
// Cephes polynomials (kernel_math.h), so --use_fast_math cannot degrade
// them.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernel_math.h"
#include "vitdense_ops.h"

namespace vitdense {
namespace {

constexpr int kTile = 64;
constexpr int kThreads = 256;

__device__ __forceinline__ void sincos_any(float x, float *s, float *c) {
  if (fabsf(x) > kFastSinCosLimit) {  // rare: exact libm path
    sincosf(x, s, c);
    return;
  }
  cephes_sincosf(x, s, c);
}

__device__ __forceinline__ void sincos_any(double x, double *s, double *c) {
  sincos(x, s, c);
}

// Fills emb[channel * kTile + t] for the tile's pairs (i, j0 + t).
template <typename T>
__device__ void tile_embedding(const T *__restrict__ a,
                               const T *__restrict__ tgt, int n,
                               const T *__restrict__ dim_t, int half, T scale,
                               T eps, T *emb) {
  const int F = 2 * half;
  for (int e = threadIdx.x; e < 4 * half * n; e += blockDim.x) {
    const int t = e % n, km = e / n, k = km / half, m = km % half;
    const T *c = tgt + 4 * t;
    T f;
    if (k == 0)
      f = log(fabs(a[0] - c[0]) / (a[2] + eps) + T(1));
    else if (k == 1)
      f = log(fabs(a[1] - c[1]) / (a[3] + eps) + T(1));
    else
      f = log((a[k] + eps) / (c[k] + eps));
    T s, co;
    sincos_any((f * scale) / dim_t[m], &s, &co);
    emb[(k * F + 2 * m) * kTile + t] = s;
    emb[(k * F + 2 * m + 1) * kTile + t] = co;
  }
}

template <typename T>
__global__ void relation_forward_kernel(
    const T *__restrict__ src, const T *__restrict__ tgt,
    const T *__restrict__ weight, const T *__restrict__ bias,
    const T *__restrict__ dim_t, T scale, T eps, T *__restrict__ out,
    int64_t n_src, int64_t n_tgt, int heads, int half) {
  extern __shared__ unsigned char smem_raw[];
  T *emb = reinterpret_cast<T *>(smem_raw);
  const int C = 8 * half;
  const int64_t tiles = (n_tgt + kTile - 1) / kTile;
  const int64_t row = blockIdx.x / tiles;  // b * n_src + i
  const int64_t j0 = (blockIdx.x % tiles) * kTile;
  const int64_t b = row / n_src, i = row % n_src;
  const int n = static_cast<int>(n_tgt - j0 < kTile ? n_tgt - j0 : kTile);
  tile_embedding(src + row * 4, tgt + (b * n_tgt + j0) * 4, n, dim_t, half,
                 scale, eps, emb);
  __syncthreads();
  for (int e = threadIdx.x; e < heads * n; e += blockDim.x) {
    const int h = e / n, t = e % n;
    T acc = bias[h];
    for (int c = 0; c < C; ++c) acc += weight[h * C + c] * emb[c * kTile + t];
    out[((b * heads + h) * n_src + i) * n_tgt + j0 + t] = acc > T(0) ? acc : T(0);
  }
}

template <typename T>
__global__ void relation_backward_kernel(
    const T *__restrict__ src, const T *__restrict__ tgt,
    const T *__restrict__ output, const T *__restrict__ grad_out,
    const T *__restrict__ dim_t, T scale, T eps, T *__restrict__ partial,
    int64_t n_src, int64_t n_tgt, int heads, int half) {
  extern __shared__ unsigned char smem_raw[];
  const int C = 8 * half;
  T *emb = reinterpret_cast<T *>(smem_raw);
  T *g = emb + C * kTile;
  const int64_t tiles = (n_tgt + kTile - 1) / kTile;
  const int64_t row = blockIdx.x / tiles;
  const int64_t j0 = (blockIdx.x % tiles) * kTile;
  const int64_t b = row / n_src, i = row % n_src;
  const int n = static_cast<int>(n_tgt - j0 < kTile ? n_tgt - j0 : kTile);
  tile_embedding(src + row * 4, tgt + (b * n_tgt + j0) * 4, n, dim_t, half,
                 scale, eps, emb);
  for (int e = threadIdx.x; e < heads * n; e += blockDim.x) {
    const int h = e / n, t = e % n;
    const int64_t idx = ((b * heads + h) * n_src + i) * n_tgt + j0 + t;
    g[h * kTile + t] = output[idx] > T(0) ? grad_out[idx] : T(0);
  }
  __syncthreads();
  T *block_partial = partial + static_cast<int64_t>(blockIdx.x) * heads * (C + 1);
  for (int e = threadIdx.x; e < heads * (C + 1); e += blockDim.x) {
    const int h = e / (C + 1), c = e % (C + 1);
    T acc = 0;
    for (int t = 0; t < n; ++t)
      acc += g[h * kTile + t] * (c == C ? T(1) : emb[c * kTile + t]);
    block_partial[h * (C + 1) + c] = acc;
  }
}

void check_relation_cuda(const at::Tensor &src, const at::Tensor &tgt,
                         const at::Tensor &dim_t) {
  for (const at::Tensor *t : {&src, &tgt, &dim_t}) {
    TORCH_CHECK(t->is_cuda() && t->device() == src.device() &&
                    t->is_contiguous() && t->scalar_type() == src.scalar_type(),
                "relation: inputs must be contiguous CUDA tensors of one dtype");
  }
  TORCH_CHECK(src.dim() == 3 && tgt.dim() == 3 && src.size(2) == 4 &&
                  tgt.size(2) == 4 && src.size(0) == tgt.size(0),
              "relation: boxes must be [B, N, 4] and [B, M, 4]");
  TORCH_CHECK(src.scalar_type() == at::kFloat ||
                  src.scalar_type() == at::kDouble,
              "relation: only float32 and float64 are supported");
}

}  // namespace

at::Tensor relation_forward_cuda(const at::Tensor &src, const at::Tensor &tgt,
                                 const at::Tensor &weight,
                                 const at::Tensor &bias,
                                 const at::Tensor &dim_t, double scale,
                                 double eps) {
  check_relation_cuda(src, tgt, dim_t);
  const c10::cuda::CUDAGuard guard(src.device());
  const int64_t batch = src.size(0), n_src = src.size(1), n_tgt = tgt.size(1);
  const int heads = static_cast<int>(weight.size(0));
  const int half = static_cast<int>(dim_t.size(0));
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == 8 * half &&
                  weight.is_contiguous() && bias.is_contiguous() &&
                  bias.numel() == heads,
              "relation: weight must be [heads, 8 * len(dim_t)], bias [heads]");
  auto out = at::empty({batch, heads, n_src, n_tgt}, src.options());
  const int64_t blocks = batch * n_src * ((n_tgt + kTile - 1) / kTile);
  if (blocks == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "relation_forward_cuda", [&] {
    const size_t smem = sizeof(scalar_t) * 8 * half * kTile;
    relation_forward_kernel<scalar_t>
        <<<blocks, kThreads, smem, c10::cuda::getCurrentCUDAStream()>>>(
            src.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(),
            weight.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
            dim_t.data_ptr<scalar_t>(), static_cast<scalar_t>(scale),
            static_cast<scalar_t>(eps), out.data_ptr<scalar_t>(), n_src,
            n_tgt, heads, half);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> relation_backward_cuda(
    const at::Tensor &src, const at::Tensor &tgt, const at::Tensor &output,
    const at::Tensor &dim_t, const at::Tensor &grad_output, double scale,
    double eps) {
  check_relation_cuda(src, tgt, dim_t);
  TORCH_CHECK(output.is_contiguous() && grad_output.is_contiguous() &&
                  output.sizes() == grad_output.sizes() && output.dim() == 4,
              "relation: output/grad_output must be contiguous [B, heads, N, M]");
  const c10::cuda::CUDAGuard guard(src.device());
  const int64_t batch = src.size(0), n_src = src.size(1), n_tgt = tgt.size(1);
  const int heads = static_cast<int>(output.size(1));
  const int half = static_cast<int>(dim_t.size(0));
  const int C = 8 * half;
  const int64_t blocks = batch * n_src * ((n_tgt + kTile - 1) / kTile);
  auto partial = at::zeros({std::max<int64_t>(blocks, 1), heads, C + 1},
                           src.options());
  if (blocks > 0) {
    AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "relation_backward_cuda", [&] {
      const size_t smem = sizeof(scalar_t) * (C + heads) * kTile;
      relation_backward_kernel<scalar_t>
          <<<blocks, kThreads, smem, c10::cuda::getCurrentCUDAStream()>>>(
              src.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(),
              output.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
              dim_t.data_ptr<scalar_t>(), static_cast<scalar_t>(scale),
              static_cast<scalar_t>(eps), partial.data_ptr<scalar_t>(), n_src,
              n_tgt, heads, half);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  auto total = partial.sum(0);  // fixed-order reduction over blocks
  return {total.narrow(1, 0, C).contiguous(), total.select(1, C).contiguous()};
}

}  // namespace vitdense
