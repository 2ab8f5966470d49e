#include <cblas.h>

#include "pymdbn/blas.h"

namespace pymdbn {

namespace {
CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, float alpha, CMat<float> a, CMat<float> b, float beta,
                 Mat<float> c) {
  const index_t k = ta ? a.rows : a.cols;
  if (c.empty()) return;
  if (k == 0) {  // BLAS leaves C untouched for k = 0; the product is zero.
    for (index_t i = 0; i < c.rows; ++i)
      for (index_t j = 0; j < c.cols; ++j) c(i, j) = beta == 0.f ? 0.f : beta * c(i, j);
    return;
  }
  scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), blasint(c.rows), blasint(c.cols), blasint(k),
                    alpha, a.data, blasint(a.ld), b.data, blasint(b.ld), beta, c.data,
                    blasint(c.ld));
}

template <>
void gemm<double>(bool ta, bool tb, double alpha, CMat<double> a, CMat<double> b, double beta,
                  Mat<double> c) {
  const index_t k = ta ? a.rows : a.cols;
  if (c.empty()) return;
  if (k == 0) {
    for (index_t i = 0; i < c.rows; ++i)
      for (index_t j = 0; j < c.cols; ++j) c(i, j) = beta == 0. ? 0. : beta * c(i, j);
    return;
  }
  scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), blasint(c.rows), blasint(c.cols), blasint(k),
                    alpha, a.data, blasint(a.ld), b.data, blasint(b.ld), beta, c.data,
                    blasint(c.ld));
}

int blas_num_threads() { return scipy_openblas_get_num_threads(); }
const char* blas_config() { return scipy_openblas_get_config(); }

}  // namespace pymdbn
