// Annealed importance sampling for a Bernoulli RBM, as cpu/ais.cpp: the loop over betas
// stays on the host and only issues work on the stream (no synchronisation inside it);
// each transition's sigmoid and draw are fused into one kernel.
#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// The samplers compute the CPU's probability (rounded to T) and draw from it as
// sample_bernoulli does; the probabilities themselves are never read again.

// v ~ sigma(base): the base-rate model.
template <class T>
struct BaseRate {
  CVec<T> base;
  Mat<T> v;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      if (t >= n) break;
      const T p = sigmoid(base[j0 + t]);
      v(i, j0 + t) = u01(r.v[t]) < double(p) ? T(1) : T(0);
    }
  }
};

// h ~ sigma(beta pre).
template <class T>
struct HiddenStep {
  CMat<T> pre;
  T beta;
  Mat<T> h;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      if (t >= n) break;
      const T p = sigmoid(beta * pre(i, j0 + t));
      h(i, j0 + t) = u01(r.v[t]) < double(p) ? T(1) : T(0);
    }
  }
};

// v ~ sigma((1 - beta) base + beta (h w + b_visible)), hw holding the GEMM's h w.
template <class T>
struct VisibleStep {
  CMat<T> hw;
  CVec<T> b_visible, base;
  T beta, beta1;
  Mat<T> v;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      if (t >= n) break;
      const index_t j = j0 + t;
      const T a = hw(i, j) + b_visible[j];  // affine's rounding, as on the CPU
      const T p = sigmoid(beta1 * base[j] + beta * a);
      v(i, j) = u01(r.v[t]) < double(p) ? T(1) : T(0);
    }
  }
};

// log_weights[i] += log p_beta(v_i) - log p_prev(v_i), one warp per chain (lane l sums
// columns l, l + 32, ... in order, then the butterfly), with
// log p_beta(v) = (1 - beta) base.v + beta b_visible.v + sum_j softplus(beta pre_j).
template <class T>
__global__ void log_weight_kernel(CMat<T> v, CMat<T> pre, CVec<T> base, CVec<T> b_visible,
                                  double beta, double prev, Vec<double> log_weights) {
  const index_t lane = threadIdx.x % kWarp;
  const index_t warps = index_t(gridDim.x) * blockDim.x / kWarp;
  for (index_t i = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; i < v.rows;
       i += warps) {
    double db = 0, dm = 0, sb = 0, sp = 0;
    for (index_t j = lane; j < v.cols; j += kWarp) {
      const double x = double(v(i, j));
      db += x * double(base[j]);
      dm += x * double(b_visible[j]);
    }
    for (index_t j = lane; j < pre.cols; j += kWarp) {
      const double q = double(pre(i, j));
      sb += double(softplus(T(beta * q)));
      sp += double(softplus(T(prev * q)));
    }
    db = warp_sum(db);
    dm = warp_sum(dm);
    sb = warp_sum(sb);
    sp = warp_sum(sp);
    if (lane == 0) {
      const double lp_beta = (1 - beta) * db + beta * dm + sb;
      const double lp_prev = (1 - prev) * db + prev * dm + sp;
      log_weights[i] += lp_beta - lp_prev;
    }
  }
}

}  // namespace

template <class T>
void ais_log_weights(CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, CVec<T> base_b_visible,
                     CVec<double> betas, std::uint64_t seed, Vec<double> log_weights) {
  const index_t m = log_weights.size, nv = w.cols, nh = w.rows, K = betas.size;
  if (m == 0) return;
  Buffer<T> buf_v(m * nv), buf_p(m * nv), buf_h(m * nh), buf_pre(m * nh);
  Mat<T> v(buf_v.get(), m, nv), p(buf_p.get(), m, nv), h(buf_h.get(), m, nh),
      pre(buf_pre.get(), m, nh);

  launch_per_block(m, nv, CounterRNG{seed, 0}, BaseRate<T>{base_b_visible, v});
  PYMDBN_CUDA_CHECK(cudaMemsetAsync(log_weights.data, 0, sizeof(double) * std::size_t(m),
                                    stream()));

  for (index_t k = 1; k < K; ++k) {
    const double beta = betas[k], prev = betas[k - 1];
    affine<T>(v, w, true, b_hidden, pre);
    launch(m * kWarp, log_weight_kernel<T>, CMat<T>(v), CMat<T>(pre), base_b_visible, b_visible,
           beta, prev, log_weights);
    if (k + 1 == K) break;
    // Transition that leaves the distribution at beta invariant.
    const T bt = T(beta), bt1 = T(1 - beta);
    launch_per_block(m, nh, CounterRNG{seed, std::uint64_t(2 * k - 1)},
                     HiddenStep<T>{pre, bt, h});
    gemm<T>(false, false, T(1), h, w, T(0), p);
    launch_per_block(m, nv, CounterRNG{seed, std::uint64_t(2 * k)},
                     VisibleStep<T>{p, b_visible, base_b_visible, bt, bt1, v});
  }
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_AIS)

}  // namespace pymdbn::cuda
