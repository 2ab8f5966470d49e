#include <cmath>
#include <cstdint>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

namespace {

// Below this deviation relative to the mean a row counts as constant.
constexpr double kFlatRow = 1e-7;

// Mean and population standard deviation of one row, two passes in double (the row is
// in cache for the second); a zero, negligible or non-finite deviation becomes 1.
template <class S>
void row_stats(const S* x, index_t n, double& mean, double& sd) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (index_t j = 0; j < n; ++j) sum += double(x[j]);
  mean = sum / double(n);
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (index_t j = 0; j < n; ++j) {
    const double d = double(x[j]) - mean;
    ss += d * d;
  }
  sd = std::sqrt(ss / double(n));
  // A constant row leaves only rounding in sd (mean need not equal the value exactly).
  if (!(sd > kFlatRow * std::fabs(mean)) || !(sd > 0) || !std::isfinite(sd)) sd = 1;
}

}  // namespace

// One pass per row (two more with per_row), rows split across threads. No FTZ/DAZ
// here: without per_row the result is bit-identical to NumPy's (x - mean) / scale in T,
// denormals included.
template <class S, class T>
bool standardize(const S* x, index_t rows, index_t cols, const T* mean, const T* scale,
                 bool per_feature, bool per_row, Mat<T> out) {
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) \
    if (rows > 1 && rows * cols >= kParallelWork)
  for (index_t i = 0; i < rows; ++i) {
    const S* xi = x + i * cols;
    T* o = out.row(i);
    T probe = T(0);  // inf * 0 and NaN * 0 are NaN: one NaN test per row, vectorised
    if (per_row) {
      double m, sd;
      row_stats(xi, cols, m, sd);
      const T rm = T(m), rs = T(sd);
      if (per_feature) {
#pragma omp simd reduction(+ : probe)
        for (index_t j = 0; j < cols; ++j) {
          o[j] = ((T(xi[j]) - rm) / rs - mean[j]) / scale[j];
          probe += o[j] * T(0);
        }
      } else {
        const T mu = mean[0], s = scale[0];
#pragma omp simd reduction(+ : probe)
        for (index_t j = 0; j < cols; ++j) {
          o[j] = ((T(xi[j]) - rm) / rs - mu) / s;
          probe += o[j] * T(0);
        }
      }
    } else if (per_feature) {
#pragma omp simd reduction(+ : probe)
      for (index_t j = 0; j < cols; ++j) {
        o[j] = (T(xi[j]) - mean[j]) / scale[j];
        probe += o[j] * T(0);
      }
    } else {
      const T m = mean[0], s = scale[0];
#pragma omp simd reduction(+ : probe)
      for (index_t j = 0; j < cols; ++j) {
        o[j] = (T(xi[j]) - m) / s;
        probe += o[j] * T(0);
      }
    }
    finite = finite && probe == T(0);
  }
  return finite;
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_STANDARDIZE)

}  // namespace pymdbn::cpu
