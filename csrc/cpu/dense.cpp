#include <cmath>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

template <class T>
void dense_forward(CMat<T> x, CMat<T> w, CVec<T> b, T clip, Activation act, Mat<T> z, Mat<T> a) {
  affine<T>(x, w, false, b, z);
  const T c = clip_bound(clip);
  for_rows(z.rows, z.cols, [&](index_t i) {
    const T* zi = z.row(i);
    T* ai = a.row(i);
    if (act == Activation::Linear) {
      std::copy_n(zi, z.cols, ai);
      return;
    }
#pragma omp simd
    for (index_t j = 0; j < z.cols; ++j) ai[j] = clipped_sigmoid(zi[j], c);
  });
}

template <class T>
void dense_backward(CMat<T> grad_a, CMat<T> z, CMat<T> a, CMat<T> x, CMat<T> w, T clip,
                    Activation act, Mat<T> grad_x, Mat<T> grad_w, Vec<T> grad_b, Mat<T> dz) {
  for_rows(dz.rows, dz.cols, [&](index_t i) {
    const T* g = grad_a.row(i);
    const T* zi = z.row(i);
    const T* ai = a.row(i);
    T* d = dz.row(i);
    if (act == Activation::Linear) {
      std::copy_n(g, dz.cols, d);
      return;
    }
    const bool clipped = clip > T(0);
#pragma omp simd
    for (index_t j = 0; j < dz.cols; ++j) {
      const T dv = g[j] * ai[j] * (T(1) - ai[j]);
      d[j] = (clipped && !(std::fabs(zi[j]) < clip)) ? T(0) : dv;
    }
  });
  gemm<T>(true, false, T(1), x, dz, T(0), grad_w);
  column_sums<T>(dz, T(1), grad_b.data);
  if (!grad_x.empty()) gemm<T>(false, true, T(1), dz, w, T(0), grad_x);
}

template <class T>
double softmax_cross_entropy(CMat<T> logits, const std::int64_t* y, const double* weight,
                             Mat<T> grad, Mat<T> proba) {
  const index_t n = logits.rows, k = logits.cols;
  double total = 0;
  for (index_t i = 0; i < n; ++i) total += weight ? weight[i] : 1.0;
  std::vector<double> row_loss(n);
  for_rows(n, k, [&](index_t i) {
    const T* l = logits.row(i);
    T* p = proba.row(i);
    T* g = grad.row(i);
    double mx = l[0];
    for (index_t j = 1; j < k; ++j) mx = std::max(mx, double(l[j]));
    double sum = 0;
    for (index_t j = 0; j < k; ++j) sum += std::exp(double(l[j]) - mx);
    const double log_sum = std::log(sum), wi = (weight ? weight[i] : 1.0) / total;
    for (index_t j = 0; j < k; ++j) {
      const double pj = std::exp(double(l[j]) - mx - log_sum);
      p[j] = T(pj);
      g[j] = T(wi * (pj - (j == y[i] ? 1.0 : 0.0)));
    }
    row_loss[i] = -wi * (double(l[y[i]]) - mx - log_sum);
  });
  double loss = 0;
  for (double r : row_loss) loss += r;  // row order: independent of threads
  return loss;
}

template <class T>
void sgd_momentum_update(Vec<T> p, CVec<T> g, Vec<T> v, T lr, T momentum, T wd) {
#pragma omp parallel for simd if (p.size >= kParallelWork)
  for (index_t i = 0; i < p.size; ++i) {
    v[i] = flush_denormal(momentum * v[i] - lr * (g[i] + wd * p[i]));
    p[i] += v[i];
  }
}

template <class T>
void adam_update(Vec<T> p, CVec<T> g, Vec<T> m, Vec<T> v, T lr, T beta1, T beta2, T eps,
                 std::int64_t t, T wd) {
  const T c1 = T(1) - T(std::pow(double(beta1), double(t)));
  const T c2 = T(1) - T(std::pow(double(beta2), double(t)));
#pragma omp parallel for simd if (p.size >= kParallelWork)
  for (index_t i = 0; i < p.size; ++i) {
    const T gi = g[i] + wd * p[i];
    m[i] = flush_denormal(beta1 * m[i] + (T(1) - beta1) * gi);
    v[i] = flush_denormal(beta2 * v[i] + (T(1) - beta2) * gi * gi);
    p[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
  }
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_DENSE)

}  // namespace pymdbn::cpu
