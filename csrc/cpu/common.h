// Helpers shared by the CPU ops (internal).
#pragma once
#include <omp.h>

#include <algorithm>
#include <vector>

#include "blas.h"
#include "ftz.h"
#include "pymdbn/numerics.h"
#include "pymdbn/ops.h"
#include "pymdbn/view.h"

namespace pymdbn::cpu {

// Below this many elements a parallel region costs more than it saves.
constexpr index_t kParallelWork = 1 << 15;

// Calls f(i) for each row, in parallel when rows * cols is large enough, with
// denormals flushed in every thread.
template <class F>
void for_rows(index_t rows, index_t cols, F&& f) {
#pragma omp parallel if (rows > 1 && rows * cols >= kParallelWork)
  {
    ScopedFTZ ftz;
#pragma omp for schedule(static)
    for (index_t i = 0; i < rows; ++i) f(i);
  }
}

// out = map(x op(w) + b) row by row, one GEMM and one pass.
template <class T, class Map>
void affine_map(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out, Map map) {
  gemm<T>(false, trans_w, T(1), x, w, T(0), out);
  for_rows(out.rows, out.cols, [&](index_t i) {
    T* o = out.row(i);
#pragma omp simd
    for (index_t j = 0; j < out.cols; ++j) o[j] = map(o[j] + b[j]);
  });
}

// sums[j] = scale * sum_i a(i, j), summed in row order so the result does not
// depend on the number of threads.
template <class T>
void column_sums(CMat<T> a, T scale, T* sums) {
  constexpr index_t block = 64;
  const index_t nblocks = (a.cols + block - 1) / block;
#pragma omp parallel for schedule(static) if (a.rows * a.cols >= kParallelWork)
  for (index_t cb = 0; cb < nblocks; ++cb) {
    const index_t j0 = cb * block, j1 = std::min(a.cols, j0 + block);
    T acc[block] = {};
    for (index_t i = 0; i < a.rows; ++i) {
      const T* r = a.row(i);
      for (index_t j = j0; j < j1; ++j) acc[j - j0] += r[j];
    }
    for (index_t j = j0; j < j1; ++j) sums[j] = scale * acc[j - j0];
  }
}

}  // namespace pymdbn::cpu
