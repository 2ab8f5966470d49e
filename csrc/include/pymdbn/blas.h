// GEMM on views through the scipy-openblas32 CBLAS (symbols scipy_cblas_*).
#pragma once
#include <stdexcept>

#include "pymdbn/view.h"

namespace pymdbn {

// C = alpha * op(A) op(B) + beta * C, with op(X) = X or X^T; all row-major.
template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c);

// OpenBLAS's own threads off: gemm splits the work across OpenMP threads instead.
void blas_single_threaded();

// Threads OpenBLAS uses (for show_config).
int blas_num_threads();
const char* blas_config();

}  // namespace pymdbn
