#include <cstdint>

#include "common.h"
#include "pymdbn/ops.h"

namespace pymdbn {

// One pass, rows split across threads. No FTZ/DAZ here: the result is bit-identical
// to NumPy's (x - mean) / scale in T, denormals included.
template <class S, class T>
bool standardize(const S* x, index_t rows, index_t cols, const T* mean, const T* scale,
                 bool per_feature, Mat<T> out) {
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) \
    if (rows > 1 && rows * cols >= cpu::kParallelWork)
  for (index_t i = 0; i < rows; ++i) {
    const S* xi = x + i * cols;
    T* o = out.row(i);
    T probe = T(0);  // inf * 0 and NaN * 0 are NaN: one NaN test per row, vectorised
    if (per_feature) {
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

#define PYMDBN_STANDARDIZE(S, T)                                                          \
  template bool standardize<S, T>(const S*, index_t, index_t, const T*, const T*, bool, \
                                  Mat<T>);
#define PYMDBN_STANDARDIZE_ALL(S) PYMDBN_STANDARDIZE(S, float) PYMDBN_STANDARDIZE(S, double)
PYMDBN_STANDARDIZE_ALL(std::uint8_t)
PYMDBN_STANDARDIZE_ALL(std::uint16_t)
PYMDBN_STANDARDIZE_ALL(std::int16_t)
PYMDBN_STANDARDIZE_ALL(float)
PYMDBN_STANDARDIZE_ALL(double)

}  // namespace pymdbn
