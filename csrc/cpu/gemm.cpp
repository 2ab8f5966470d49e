#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "pymdbn/blas.h"

// OpenBLAS runs single-threaded (set when the module loads) and the GEMMs are split
// across pymdbn's OpenMP threads instead: one thread pool, so OpenBLAS's spinning
// workers never compete with the OpenMP loops between GEMMs. Each element of C is
// still computed by one single-threaded GEMM with the same order over k, so results
// do not depend on the number of threads.

namespace pymdbn {

namespace {

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

void call(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a,
          index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), blasint(m), blasint(n), blasint(k), alpha, a,
                    blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}
void call(bool ta, bool tb, index_t m, index_t n, index_t k, double alpha, const double* a,
          index_t lda, const double* b, index_t ldb, double beta, double* c, index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), blasint(m), blasint(n), blasint(k), alpha, a,
                    blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

// Below this many multiply-adds one thread is faster than waking the others.
constexpr double kParallelFlops = 2e6;

template <class T>
void gemm_impl(bool ta, bool tb, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c) {
  const index_t m = c.rows, n = c.cols, k = ta ? a.rows : a.cols;
  if (c.empty()) return;
  if (k == 0) {  // BLAS leaves C untouched for k = 0; the product is zero.
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) c(i, j) = beta == T(0) ? T(0) : beta * c(i, j);
    return;
  }
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt <= 1 || double(m) * double(n) * double(k) < kParallelFlops) {
    call(ta, tb, m, n, k, alpha, a.data, a.ld, b.data, b.ld, beta, c.data, c.ld);
    return;
  }
  // Split the longer side of C into one contiguous block per thread (multiples of 16).
  const bool by_rows = m >= n;
  const index_t len = by_rows ? m : n;
  const index_t chunk = ((len + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel num_threads(nt)
  {
    const index_t s0 = index_t(omp_get_thread_num()) * chunk;
    const index_t s1 = std::min(len, s0 + chunk);
    if (s0 < s1) {
      if (by_rows) {  // rows s0..s1 of op(A) and C
        const T* ap = ta ? a.data + s0 : a.data + s0 * a.ld;
        call(ta, tb, s1 - s0, n, k, alpha, ap, a.ld, b.data, b.ld, beta, c.data + s0 * c.ld,
             c.ld);
      } else {  // columns s0..s1 of op(B) and C
        const T* bp = tb ? b.data + s0 * b.ld : b.data + s0;
        call(ta, tb, m, s1 - s0, k, alpha, a.data, a.ld, bp, b.ld, beta, c.data + s0, c.ld);
      }
    }
  }
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, float alpha, CMat<float> a, CMat<float> b, float beta,
                 Mat<float> c) {
  gemm_impl<float>(ta, tb, alpha, a, b, beta, c);
}

template <>
void gemm<double>(bool ta, bool tb, double alpha, CMat<double> a, CMat<double> b, double beta,
                  Mat<double> c) {
  gemm_impl<double>(ta, tb, alpha, a, b, beta, c);
}

void blas_single_threaded() { scipy_openblas_set_num_threads(1); }

int blas_num_threads() { return scipy_openblas_get_num_threads(); }
const char* blas_config() { return scipy_openblas_get_config(); }

}  // namespace pymdbn
