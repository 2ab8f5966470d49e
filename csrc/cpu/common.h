// Helpers shared by the CPU ops (internal).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
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

// Calls f(r0, r1) once per thread on its share of rows [0, rows) (static, contiguous),
// in parallel when rows * cols is large enough, with denormals flushed in every thread.
// For element-wise loops whose element (i, j) depends only on (i, j): any split gives
// the same bits.
template <class F>
void for_row_ranges(index_t rows, index_t cols, F&& f) {
#pragma omp parallel if (rows > 1 && rows * cols >= kParallelWork)
  {
    ScopedFTZ ftz;
    const index_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    if (r0 < r1) f(r0, r1);
  }
}

// -- SIMD variants of the element-wise loops -------------------------------------------
// The build's baseline is x86-64 (SSE2). The hot element-wise loops (the affine
// epilogue below, sample.cpp's Bernoulli and Gaussian draws) are also compiled for AVX2
// and AVX-512 through GCC target attributes, and simd_level() picks one at run time
// (once per process). Every variant computes the same bits as the baseline: the loops
// are the same C++ compiled for wider registers, IEEE operations are exact per element
// whatever the width, MXCSR's FTZ/DAZ govern VEX/EVEX code as they do SSE, and
// fp-contract=off keeps GCC from fusing a * b + c into an FMA (AVX-512F has FMA forms;
// the baseline has none, and the C++ default under -std=gnu++17 is fp-contract=fast).
// tests/test_elementwise_paths.py runs each variant the CPU has and compares bits.
//
// PYMDBN_SIMD=sse2|avx2|avx512 (read once, at the first call) caps the level for tests
// and measurements; a level above what the CPU has falls back to the best it has, an
// unknown value is ignored. Other compilers and CPUs: the baseline loop only.
enum class Simd : int { sse2 = 0, avx2 = 1, avx512 = 2 };

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYMDBN_SIMD_VARIANTS 1
#define PYMDBN_TARGET_AVX2 __attribute__((target("avx2"), optimize("fp-contract=off")))
#define PYMDBN_TARGET_AVX512                                                 \
  __attribute__((target("avx2,avx512f,avx512vl"), optimize("fp-contract=off")))
#endif
#define PYMDBN_ALWAYS_INLINE inline __attribute__((always_inline))

inline Simd detect_simd() {
  Simd best = Simd::sse2;
#ifdef PYMDBN_SIMD_VARIANTS
  // libgcc's checks include the OS's XSAVE support of the wider registers.
  if (__builtin_cpu_supports("avx2")) best = Simd::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
    best = Simd::avx512;
#endif
  Simd want = best;
  if (const char* e = std::getenv("PYMDBN_SIMD")) {
    if (!std::strcmp(e, "sse2")) want = Simd::sse2;
    else if (!std::strcmp(e, "avx2")) want = Simd::avx2;
    else if (!std::strcmp(e, "avx512")) want = Simd::avx512;
  }
  return int(want) < int(best) ? want : best;
}

inline Simd simd_level() {
  static const Simd level = detect_simd();
  return level;
}

// f(simd, i0, i1) over [0, n) cut evenly over the threads, for loops whose elements are
// independent (any cut gives the same bits). Unlike for_row_ranges, no FTZ/DAZ: the FP
// environment stays the caller's (denormals kept, as in the NumPy twins).
template <class F>
void parallel_elements(index_t n, const F& f) {
  const Simd simd = simd_level();
#pragma omp parallel if (n >= kParallelWork && !omp_in_parallel())
  {
    const index_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
    if (i0 < i1) f(simd, i0, i1);
  }
}

// o[j] = map(o[j] + b[j]) on rows [r0, r1) of out: the one loop, compiled per variant.
template <class T, class Map>
PYMDBN_ALWAYS_INLINE void bias_map_rows(Mat<T> out, const T* b, const Map& map, index_t r0,
                                        index_t r1) {
  for (index_t i = r0; i < r1; ++i) {
    T* o = out.row(i);
#pragma omp simd
    for (index_t j = 0; j < out.cols; ++j) o[j] = map(o[j] + b[j]);
  }
}
#ifdef PYMDBN_SIMD_VARIANTS
template <class T, class Map>
PYMDBN_TARGET_AVX2 void bias_map_rows_avx2(Mat<T> out, const T* b, const Map& map, index_t r0,
                                           index_t r1) {
  bias_map_rows(out, b, map, r0, r1);
}
template <class T, class Map>
PYMDBN_TARGET_AVX512 void bias_map_rows_avx512(Mat<T> out, const T* b, const Map& map,
                                               index_t r0, index_t r1) {
  bias_map_rows(out, b, map, r0, r1);
}
#endif

// out = map(x op(w) + b) row by row, one GEMM and one pass.
template <class T, class Map>
void affine_map(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out, Map map) {
  gemm<T>(false, trans_w, T(1), x, w, T(0), out);
  const Simd simd = simd_level();
  for_row_ranges(out.rows, out.cols, [&](index_t r0, index_t r1) {
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512) return bias_map_rows_avx512<T>(out, b.data, map, r0, r1);
    if (simd == Simd::avx2) return bias_map_rows_avx2<T>(out, b.data, map, r0, r1);
#endif
    (void)simd;
    bias_map_rows<T>(out, b.data, map, r0, r1);
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
