// Dense layers and their optimisers on the GPU: the CPU's arithmetic in the same order
// (csrc/cpu/dense.cpp); only the GEMMs and the double reductions of the softmax loss
// sum in another order.
#include <cmath>

#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// z += b (the GEMM wrote x w); a = clipped sigmoid of z, or z itself (a may be z).
template <class T>
__global__ void dense_forward_kernel(Mat<T> z, CVec<T> b, T c, bool sigmoid, Mat<T> a) {
  const index_t n = z.rows * z.cols;
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / z.cols, j = e - i * z.cols;
    const T v = z(i, j) + b[j];
    z(i, j) = v;
    a(i, j) = sigmoid ? clipped_sigmoid(v, c) : v;
  }
}

// dz = grad_a a (1 - a), 0 where the forward pass clipped (|z| >= clip > 0); Linear
// copies grad_a. dz may be grad_a itself.
template <class T>
__global__ void dense_dz_kernel(CMat<T> grad_a, CMat<T> z, CMat<T> a, T clip, bool linear,
                                Mat<T> dz) {
  const index_t n = dz.rows * dz.cols;
  const bool clipped = clip > T(0);
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / dz.cols, j = e - i * dz.cols;
    const T g = grad_a(i, j);
    if (linear) {
      dz(i, j) = g;
      continue;
    }
    const T ai = a(i, j);
    const T dv = g * ai * (T(1) - ai);
    dz(i, j) = (clipped && !(std::fabs(z(i, j)) < clip)) ? T(0) : dv;
  }
}

// *out = sum of v[0..n) (all ones when v is null), one block: thread t adds t, t + 256,
// ... in order, then the tree. Integers (the unweighted total n) stay exact.
__global__ void sum_kernel(const double* v, index_t n, double* out) {
  __shared__ double shared[kThreads];
  double acc = 0;
  for (index_t i = threadIdx.x; i < n; i += blockDim.x) acc += v ? v[i] : 1.0;
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) *out = acc;
}

// One warp per row: max, sum of exponentials (lane partial sums in column order, then
// warp_sum, the same on every lane), then the CPU's formulas
// for proba, grad and the row's share of the loss, all in double.
template <class T>
__global__ void softmax_rows_kernel(CMat<T> logits, const std::int64_t* y, const double* weight,
                                    const double* total, Mat<T> grad, Mat<T> proba,
                                    double* row_loss) {
  const int lane = int(threadIdx.x % kWarp);
  const index_t warps = index_t(gridDim.x) * (blockDim.x / kWarp);
  const index_t k = logits.cols;
  const double tot = *total;
  for (index_t i = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; i < logits.rows;
       i += warps) {
    const T* l = logits.row(i);
    // A NaN logit makes the whole row NaN through the sum below, whatever max returns.
    double mx = -INFINITY;
    for (index_t j = lane; j < k; j += kWarp) mx = fmax(mx, double(l[j]));
    for (int o = kWarp / 2; o > 0; o /= 2) mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0;
    for (index_t j = lane; j < k; j += kWarp) sum += exp(double(l[j]) - mx);
    sum = warp_sum(sum);
    const double log_sum = log(sum), wi = (weight ? weight[i] : 1.0) / tot;
    const std::int64_t yi = y[i];
    T* p = proba.row(i);
    T* g = grad.row(i);
    for (index_t j = lane; j < k; j += kWarp) {
      const double pj = exp(double(l[j]) - mx - log_sum);
      p[j] = T(pj);
      g[j] = T(wi * (pj - (j == yi ? 1.0 : 0.0)));
    }
    // The bindings check labels on the host; a bad one gives NaN here, not a fault.
    if (lane == 0)
      row_loss[i] = (yi >= 0 && yi < k) ? -wi * (double(l[yi]) - mx - log_sum) : double(NAN);
  }
}

// The optimisers keep denormals (common.cuh's *_rn): the CPU's loops run without FTZ/DAZ.
template <class T>
__global__ void sgd_kernel(Vec<T> p, CVec<T> g, Vec<T> v, T lr, T momentum, T wd) {
  PYMDBN_GRID_STRIDE(i, p.size) {
    const T pi = p[i];
    const T vi = flush_denormal(
        sub_rn(mul_rn(momentum, v[i]), mul_rn(lr, add_rn(g[i], mul_rn(wd, pi)))));
    v[i] = vi;
    p[i] = add_rn(pi, vi);
  }
}

// omb1 = 1 - beta1, omb2 = 1 - beta2; c1, c2 the bias corrections (from the host).
template <class T>
__global__ void adam_kernel(Vec<T> p, CVec<T> g, Vec<T> m, Vec<T> v, T lr, T beta1, T beta2,
                            T omb1, T omb2, T c1, T c2, T eps, T wd) {
  PYMDBN_GRID_STRIDE(i, p.size) {
    const T pi = p[i];
    const T gi = add_rn(g[i], mul_rn(wd, pi));
    const T mi = flush_denormal(add_rn(mul_rn(beta1, m[i]), mul_rn(omb1, gi)));
    const T vi = flush_denormal(add_rn(mul_rn(beta2, v[i]), mul_rn(mul_rn(omb2, gi), gi)));
    m[i] = mi;
    v[i] = vi;
    p[i] = sub_rn(pi, div_rn(mul_rn(lr, div_rn(mi, c1)), add_rn(sqrt_rn(div_rn(vi, c2)), eps)));
  }
}

}  // namespace

template <class T>
void dense_forward(CMat<T> x, CMat<T> w, CVec<T> b, T clip, Activation act, Mat<T> z, Mat<T> a) {
  gemm<T>(false, false, T(1), x, w, T(0), z);
  launch(z.rows * z.cols, dense_forward_kernel<T>, z, b, clip_bound(clip),
         act == Activation::Sigmoid, a);
}

template <class T>
void dense_backward(CMat<T> grad_a, CMat<T> z, CMat<T> a, CMat<T> x, CMat<T> w, T clip,
                    Activation act, Mat<T> grad_x, Mat<T> grad_w, Vec<T> grad_b, Mat<T> dz) {
  launch(dz.rows * dz.cols, dense_dz_kernel<T>, grad_a, z, a, clip, act == Activation::Linear,
         dz);
  gemm<T>(true, false, T(1), x, dz, T(0), grad_w);
  column_sums<T>(dz, T(1), grad_b.data);
  if (!grad_x.empty()) gemm<T>(false, true, T(1), dz, w, T(0), grad_x);
}

template <class T>
double softmax_cross_entropy(CMat<T> logits, const std::int64_t* y, const double* weight,
                             Mat<T> grad, Mat<T> proba) {
  const index_t n = logits.rows;
  if (n == 0 || logits.cols == 0) return 0.0;  // the bindings reject both
  // Row losses, then the weight total and the loss.
  Buffer<double> work(n + 2);
  double* row_loss = work.get();
  double* total = row_loss + n;
  double* loss = total + 1;
  sum_kernel<<<1, kThreads, 0, stream()>>>(weight, n, total);
  PYMDBN_CUDA_LAUNCHED();
  launch(n * kWarp, softmax_rows_kernel<T>, logits, y, weight,
         static_cast<const double*>(total), grad, proba, row_loss);
  sum_kernel<<<1, kThreads, 0, stream()>>>(row_loss, n, loss);
  PYMDBN_CUDA_LAUNCHED();
  double result = 0;
  copy_to_host(loss, &result, sizeof(double));
  return result;
}

template <class T>
void sgd_momentum_update(Vec<T> param, CVec<T> grad, Vec<T> velocity, T lr, T momentum, T wd) {
  launch(param.size, sgd_kernel<T>, param, grad, velocity, lr, momentum, wd);
}

template <class T>
void adam_update(Vec<T> param, CVec<T> grad, Vec<T> m, Vec<T> v, T lr, T beta1, T beta2, T eps,
                 std::int64_t t, T wd) {
  if (param.size == 0) return;
  // On the host exactly as the CPU computes them (its loop's 1 - beta too).
  const T c1 = T(1) - T(std::pow(double(beta1), double(t)));
  const T c2 = T(1) - T(std::pow(double(beta2), double(t)));
  const T omb1 = T(1) - beta1, omb2 = T(1) - beta2;
  launch(param.size, adam_kernel<T>, param, grad, m, v, lr, beta1, beta2, omb1, omb2, c1, c2,
         eps, wd);
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_DENSE)

}  // namespace pymdbn::cuda
