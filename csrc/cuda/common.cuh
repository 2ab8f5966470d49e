// Helpers shared by the CUDA ops (internal to csrc/cuda): error checks, the stream and
// cuBLAS handle every op runs on, launch shapes, GEMM on row-major views, and the
// element-wise and reduction kernels several ops use.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "pymdbn/cuda.h"
#include "pymdbn/numerics.h"
#include "pymdbn/ops.h"
#include "pymdbn/view.h"

namespace pymdbn::cuda {

// Throws std::runtime_error naming the call and CUDA's message (pybind11 turns it into a
// RuntimeError); the kernels never abort the interpreter.
void check(cudaError_t err, const char* what);
void check(cublasStatus_t st, const char* what);
#define PYMDBN_CUDA_CHECK(call) ::pymdbn::cuda::check((call), #call)
// After a launch: launch errors (bad configuration, no device) surface here.
#define PYMDBN_CUDA_LAUNCHED() ::pymdbn::cuda::check(cudaGetLastError(), "kernel launch")

// The stream every op runs on (set_stream; the legacy default stream unless set) and a
// cuBLAS handle bound to it, one per host thread and device.
cudaStream_t stream();
cublasHandle_t blas();

constexpr int kThreads = 256;
constexpr int kWarp = 32;

// Blocks of `threads` for a grid-stride loop over n items (at least 1, at most 65535 * 8).
inline unsigned blocks_for(index_t n, int threads = kThreads) {
  const index_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 524280 ? 524280 : b));
}

#define PYMDBN_GRID_STRIDE(i, n)                                                        \
  for (::pymdbn::index_t i = ::pymdbn::index_t(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (n); i += ::pymdbn::index_t(blockDim.x) * gridDim.x)

// Launches a grid-stride kernel over n items on the ops' stream and checks the launch;
// nothing for n <= 0 (a grid of 0 blocks is a launch error).
template <class... P, class... A>
void launch_with(int threads, index_t n, void (*kernel)(P...), A... args) {
  if (n <= 0) return;
  kernel<<<blocks_for(n, threads), threads, 0, stream()>>>(args...);
  PYMDBN_CUDA_LAUNCHED();
}
template <class... P, class... A>
void launch(index_t n, void (*kernel)(P...), A... args) {
  launch_with(kThreads, n, kernel, args...);
}

// --- fixed-order reductions (the sums repeat bit for bit whatever the grid) ------------

// Sum over a full warp by a butterfly of fixed shape: every lane gets the same sum (each
// pairwise addition commutes exactly), lane 0 the same as a shfl_down tree. All 32 lanes
// must call it (callers loop over warp-uniform rows).
__device__ inline double warp_sum(double x) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Sum over a block (blockDim.x a power of two, shared of blockDim.x doubles) in a fixed
// tree order; every thread gets it, and shared may be reused at once.
__device__ inline double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const double r = shared[0];
  __syncthreads();
  return r;
}

// --- arithmetic that keeps denormals -----------------------------------------------------

// The build's -ftz=true flushes float denormals, as the CPU kernels do inside for_rows;
// where the CPU computes without FTZ/DAZ (optimisers, standardize, column sums, the bias
// updates and weight preprocessing on the main thread), these PTX forms without .ftz give
// its result bit for bit. The .rn forms are never contracted into FMAs. Double is never
// flushed: its intrinsics suffice.
__device__ inline float add_rn(float a, float b) {
  float r;
  asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ inline float sub_rn(float a, float b) {
  float r;
  asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ inline float mul_rn(float a, float b) {
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ inline float div_rn(float a, float b) {
  float r;
  asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ inline float sqrt_rn(float a) {
  float r;
  asm("sqrt.rn.f32 %0, %1;" : "=f"(r) : "f"(a));
  return r;
}
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ inline double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ inline double sqrt_rn(double a) { return __dsqrt_rn(a); }

// T(x) keeping denormals (float <-> double would flush under -ftz=true); integers
// convert exactly.
template <class T, class S>
__device__ inline T convert_rn(S x) {
  if constexpr (std::is_same<T, S>::value) {
    return x;
  } else if constexpr (std::is_same<T, double>::value && std::is_same<S, float>::value) {
    double r;
    asm("cvt.f64.f32 %0, %1;" : "=d"(r) : "f"(x));
    return r;
  } else if constexpr (std::is_same<T, float>::value && std::is_same<S, double>::value) {
    float r;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(x));
    return r;
  } else {
    return T(x);
  }
}

// --- counter-based draws -----------------------------------------------------------------

// f(i, j0, n, r) for each 4-column Philox block of a (rows x cols) draw: r is block
// (j0 / 4, i) and covers the n <= 4 columns j0..; one thread per block, so each block is
// generated once, as on the CPU.
template <class F>
__global__ void per_block_kernel(index_t rows, index_t cols, CounterRNG rng, F f) {
  const index_t nb = (cols + 3) / 4;
  PYMDBN_GRID_STRIDE(e, rows * nb) {
    const index_t i = e / nb, c = e - i * nb, j0 = 4 * c;
    const Philox4x32 r = rng.block(std::uint64_t(c), std::uint64_t(i));
    f(i, j0, cols - j0 < 4 ? int(cols - j0) : 4, r);
  }
}

template <class F>
void launch_per_block(index_t rows, index_t cols, CounterRNG rng, F f) {
  launch(rows * ((cols + 3) / 4), per_block_kernel<F>, rows, cols, rng, f);
}

// C = alpha op(A) op(B) + beta C on row-major views through cuBLAS (float: SGEMM with
// TF32 off, so float32 products keep float32's precision; double: DGEMM). An empty inner
// dimension gives C = beta C (zeros for beta = 0), as the CPU's gemm, without cuBLAS.
template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c);

// out(i, j) = f(out(i, j) + b[j]) over a row-major matrix (the epilogue of the affine ops).
template <class T, class F>
__global__ void bias_map_kernel(Mat<T> out, CVec<T> b, F f) {
  const index_t n = out.rows * out.cols;
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / out.cols, j = e - i * out.cols;
    T& o = out(i, j);
    o = f(o + b[j]);
  }
}

// out = map(x op(w) + b): one GEMM and one element-wise pass, as the CPU's affine_map.
template <class T, class F>
void affine_map(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out, F f) {
  gemm<T>(false, trans_w, T(1), x, w, T(0), out);
  launch(out.rows * out.cols, bias_map_kernel<T, F>, out, b, f);
}

// sums[j] = scale * sum_i a(i, j), each column summed by one thread in row order and
// without FTZ (the CPU's order and mode: results do not depend on the launch shape).
template <class T>
void column_sums(CMat<T> a, T scale, T* sums);

// A device buffer for workspace, freed when it goes out of scope (stream-ordered).
template <class T>
class Buffer {
 public:
  explicit Buffer(index_t n) : n_(n) {
    if (n > 0) PYMDBN_CUDA_CHECK(cudaMallocAsync(&p_, sizeof(T) * std::size_t(n), stream()));
  }
  ~Buffer() {
    if (p_) cudaFreeAsync(p_, stream());
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() const { return p_; }
  index_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  index_t n_ = 0;
};

}  // namespace pymdbn::cuda
