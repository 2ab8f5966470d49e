// Standardisation on the GPU (csrc/cpu/standardize.cpp): the same element-wise
// arithmetic in T, denormals kept, so without per_row the result is bit-identical to the
// CPU's and NumPy's; per_row's row statistics sum in another (fixed) order.
#include <cmath>

#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// Below this deviation relative to the mean a row counts as constant (as on the CPU).
constexpr double kFlatRow = 1e-7;

// The CPU runs standardize without FTZ/DAZ, and NumPy keeps denormals: the element-wise
// arithmetic and conversions use common.cuh's *_rn forms.

template <class S, class T>
__global__ void standardize_kernel(const S* x, index_t cols, const T* mean, const T* scale,
                                   bool per_feature, Mat<T> out, int* bad) {
  const index_t n = out.rows * cols;
  bool finite = true;
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / cols, j = e - i * cols;
    const index_t f = per_feature ? j : 0;
    const T o = div_rn(sub_rn(convert_rn<T>(x[e]), mean[f]), scale[f]);
    out(i, j) = o;
    finite = finite && isfinite(o);
  }
  if (!finite) *bad = 1;
}

// One block per row (grid-stride over rows): mean and population deviation in double,
// each thread adding its columns in order and the block then summing in a fixed tree
// (the CPU's SIMD sums group differently: m and s may differ in the last bits), then
// the row written as ((T(x) - T(m)) / T(s) - mean) / scale. A row is read in full
// before any of it is written, so out may overwrite x.
template <class S, class T>
__global__ void standardize_rows_kernel(const S* x, index_t rows, index_t cols, const T* mean,
                                        const T* scale, bool per_feature, Mat<T> out, int* bad) {
  __shared__ double shared[kThreads];
  bool finite = true;
  for (index_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const S* xi = x + i * cols;
    double sum = 0;
    for (index_t j = threadIdx.x; j < cols; j += blockDim.x) sum += convert_rn<double>(xi[j]);
    const double m = block_sum(sum, shared) / double(cols);
    double ss = 0;
    for (index_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const double d = convert_rn<double>(xi[j]) - m;
      ss += d * d;
    }
    double sd = sqrt(block_sum(ss, shared) / double(cols));
    // A constant row leaves only rounding in sd (mean need not equal the value exactly).
    if (!(sd > kFlatRow * fabs(m)) || !(sd > 0) || !isfinite(sd)) sd = 1;
    const T rm = convert_rn<T>(m), rs = convert_rn<T>(sd);
    T* o = out.row(i);
    for (index_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const index_t f = per_feature ? j : 0;
      const T v = div_rn(sub_rn(div_rn(sub_rn(convert_rn<T>(xi[j]), rm), rs), mean[f]), scale[f]);
      o[j] = v;
      finite = finite && isfinite(v);
    }
  }
  if (!finite) *bad = 1;
}

}  // namespace

template <class S, class T>
bool standardize(const S* x, index_t rows, index_t cols, const T* mean, const T* scale,
                 bool per_feature, bool per_row, Mat<T> out) {
  if (rows == 0 || cols == 0) return true;
  Buffer<int> bad(1);
  PYMDBN_CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, sizeof(int), stream()));
  if (per_row) {
    standardize_rows_kernel<S, T><<<blocks_for(rows, 1), kThreads, 0, stream()>>>(
        x, rows, cols, mean, scale, per_feature, out, bad.get());
    PYMDBN_CUDA_LAUNCHED();
  } else {
    launch(rows * cols, standardize_kernel<S, T>, x, cols, mean, scale, per_feature, out,
           bad.get());
  }
  int flag = 0;
  copy_to_host(bad.get(), &flag, sizeof(int));
  return flag == 0;
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_STANDARDIZE)

}  // namespace pymdbn::cuda
