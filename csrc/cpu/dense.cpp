#include <cblas.h>

#include <cmath>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

namespace {

void gemv_call(bool trans, index_t m, index_t n, const float* a, index_t lda, const float* x,
               float* y) {
  scipy_cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(m), blasint(n),
                    1.0f, a, blasint(lda), x, 1, 0.0f, y, 1);
}
void gemv_call(bool trans, index_t m, index_t n, const double* a, index_t lda, const double* x,
               double* y) {
  scipy_cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(m), blasint(n),
                    1.0, a, blasint(lda), x, 1, 0.0, y, 1);
}

// -- The optimisers' element-wise steps ------------------------------------------------
// One loop each, compiled per SIMD variant (common.h): the same bits at every width, as
// every operation (division and sqrt included) is exact per element. Adam's three
// divisions and square root per element ran as SSE code on one core before: 4.8 ms of
// each 32-row fine-tuning batch of the demo's model (2.2 M parameters), half the epoch.
// The scalars live in the step, copied into registers by value: no store through p, m
// or v can change them.
template <class T>
struct SgdStep {
  T* p;
  const T* g;
  T* v;
  T lr, momentum, wd;
};
template <class T>
struct AdamStep {
  T* p;
  const T* g;
  T* m;
  T* v;
  T lr, beta1, beta2, eps, wd, c1, c2;
};

template <class T>
PYMDBN_ALWAYS_INLINE void step_range(SgdStep<T> s, index_t i0, index_t i1) {
  T* __restrict p = s.p;
  const T* __restrict g = s.g;
  T* __restrict v = s.v;
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) {
    v[i] = flush_denormal(s.momentum * v[i] - s.lr * (g[i] + s.wd * p[i]));
    p[i] += v[i];
  }
}

template <class T>
PYMDBN_ALWAYS_INLINE void step_range(AdamStep<T> s, index_t i0, index_t i1) {
  T* __restrict p = s.p;
  const T* __restrict g = s.g;
  T* __restrict m = s.m;
  T* __restrict v = s.v;
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) {
    const T gi = g[i] + s.wd * p[i];
    const T mi = flush_denormal(s.beta1 * m[i] + (T(1) - s.beta1) * gi);
    const T vi = flush_denormal(s.beta2 * v[i] + (T(1) - s.beta2) * gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] -= s.lr * (mi / s.c1) / (std::sqrt(vi / s.c2) + s.eps);
  }
}
#ifdef PYMDBN_SIMD_VARIANTS
template <class Step>
PYMDBN_TARGET_AVX2 void step_range_avx2(Step s, index_t i0, index_t i1) {
  step_range(s, i0, i1);
}
template <class Step>
PYMDBN_TARGET_AVX512 void step_range_avx512(Step s, index_t i0, index_t i1) {
  step_range(s, i0, i1);
}
#endif

// The step over n elements, on the threads, in the CPU's widest variant.
template <class Step>
void run_step(index_t n, const Step& step) {
  parallel_elements(n, [&](Simd simd, index_t i0, index_t i1) {
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512) return step_range_avx512(step, i0, i1);
    if (simd == Simd::avx2) return step_range_avx2(step, i0, i1);
#endif
    (void)simd;
    step_range(step, i0, i1);
  });
}

// A block of a one-row product streams at least this many matrix elements (4 MiB of
// float32, ~180 us at the ~22 GB/s that one core of the 2-core Xeon reads from L3;
// waking a second thread costs far less): 4096 x 512 is cut in 2, 512 x 256 not at all.
constexpr index_t kRowBlockSize = index_t(1) << 20;
constexpr index_t kRowBlockAlign = 16;  // whole vector blocks of the GEMV kernels

// dense_forward's epilogue on a block: z += b, then a = act(z) (one loop, compiled per
// SIMD variant as common.h's bias_map_rows is, with the same bits).
template <class T>
PYMDBN_ALWAYS_INLINE void finish_block(Mat<T> z, Mat<T> a, const T* b, T c, bool linear,
                                       index_t r0, index_t r1, index_t c0, index_t cols) {
  const T* bj = b + c0;
  for (index_t i = r0; i < r1; ++i) {
    T* zi = z.row(i) + c0;
    T* ai = a.row(i) + c0;
    if (linear) {
#pragma omp simd
      for (index_t j = 0; j < cols; ++j) ai[j] = zi[j] = zi[j] + bj[j];
    } else {
#pragma omp simd
      for (index_t j = 0; j < cols; ++j) {
        zi[j] = zi[j] + bj[j];
        ai[j] = clipped_sigmoid(zi[j], c);
      }
    }
  }
}

// dense_backward's dz = grad_a sigma'(z) on rows [r0, r1), 0 where z is clipped.
template <class T>
PYMDBN_ALWAYS_INLINE void sigmoid_grad_rows(CMat<T> grad_a, CMat<T> z, CMat<T> a, T clip,
                                            Mat<T> dz, index_t r0, index_t r1) {
  const bool clipped = clip > T(0);
  for (index_t i = r0; i < r1; ++i) {
    const T* g = grad_a.row(i);
    const T* zi = z.row(i);
    const T* ai = a.row(i);
    T* di = dz.row(i);
#pragma omp simd
    for (index_t j = 0; j < dz.cols; ++j) {
      const T dv = g[j] * ai[j] * (T(1) - ai[j]);
      di[j] = (clipped && !(std::fabs(zi[j]) < clip)) ? T(0) : dv;
    }
  }
}

#ifdef PYMDBN_SIMD_VARIANTS
template <class T>
PYMDBN_TARGET_AVX2 void finish_block_avx2(Mat<T> z, Mat<T> a, const T* b, T c, bool linear,
                                          index_t r0, index_t r1, index_t c0, index_t cols) {
  finish_block(z, a, b, c, linear, r0, r1, c0, cols);
}
template <class T>
PYMDBN_TARGET_AVX512 void finish_block_avx512(Mat<T> z, Mat<T> a, const T* b, T c, bool linear,
                                              index_t r0, index_t r1, index_t c0, index_t cols) {
  finish_block(z, a, b, c, linear, r0, r1, c0, cols);
}
template <class T>
PYMDBN_TARGET_AVX2 void sigmoid_grad_rows_avx2(CMat<T> grad_a, CMat<T> z, CMat<T> a, T clip,
                                               Mat<T> dz, index_t r0, index_t r1) {
  sigmoid_grad_rows(grad_a, z, a, clip, dz, r0, r1);
}
template <class T>
PYMDBN_TARGET_AVX512 void sigmoid_grad_rows_avx512(CMat<T> grad_a, CMat<T> z, CMat<T> a, T clip,
                                                   Mat<T> dz, index_t r0, index_t r1) {
  sigmoid_grad_rows(grad_a, z, a, clip, dz, r0, r1);
}
#endif

}  // namespace

template <class T>
void row_product(bool trans, CMat<T> a, const T* x, T* y) {
  const index_t k = trans ? a.cols : a.rows, n = trans ? a.rows : a.cols;
  if (n == 0) return;
  if (k == 0) {  // BLAS leaves y untouched then; the product is zero.
    std::fill_n(y, n, T(0));
    return;
  }
  // y = x a is a^T x (row-major "transposed" GEMV); y = x a^T is a x.
  gemv_call(!trans, a.rows, a.cols, a.data, a.ld, x, y);
}

RowBlocks row_blocks(index_t n_out, index_t size) {
  RowBlocks rb;
  const index_t want = std::clamp<index_t>(size / kRowBlockSize, 1, 8);
  rb.width = std::max<index_t>((n_out + want - 1) / want, 1);
  rb.width = (rb.width + kRowBlockAlign - 1) / kRowBlockAlign * kRowBlockAlign;
  rb.count = n_out > 0 ? (n_out + rb.width - 1) / rb.width : 1;
  return rb;
}

template <class T>
void dense_forward(CMat<T> x, CMat<T> w, CVec<T> b, T clip, Activation act, Mat<T> z, Mat<T> a) {
  const T c = clip_bound(clip);
  // z += b, then a = act(z), over a block of rows and columns: right after the block's
  // product, while it is in cache, with denormals flushed as the element-wise loops do
  // (the product itself runs without, as gemm runs it).
  const Simd simd = simd_level();
  auto finish = [&](index_t r0, index_t rows, index_t c0, index_t cols) {
    ScopedFTZ ftz;
    const bool linear = act == Activation::Linear;
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512)
      return finish_block_avx512<T>(z, a, b.data, c, linear, r0, r0 + rows, c0, cols);
    if (simd == Simd::avx2)
      return finish_block_avx2<T>(z, a, b.data, c, linear, r0, r0 + rows, c0, cols);
#endif
    (void)simd;
    finish_block<T>(z, a, b.data, c, linear, r0, r0 + rows, c0, cols);
  };
  if (z.empty()) return;
  // One sample: float32 GEMVs over blocks of columns, in bfloat16 precision too. A
  // product of one row is bound by reading w, and rounding w to bfloat16 reads it once
  // more: with the rounding, one patient took 4.9 ms to explain, against 1.7 ms in
  // float32 (three 4096 x 512 pathways, 2 threads).
  if (x.rows == 1) {
    const RowBlocks rb = row_blocks(w.cols, w.rows * w.cols);
    const int nt = omp_in_parallel() ? 1 : int(std::min<index_t>(omp_get_max_threads(), rb.count));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (index_t i = 0; i < rb.count; ++i) {
      const index_t c0 = rb.begin(i), cols = std::min(rb.width, w.cols - c0);
      row_product<T>(false, CMat<T>(w.data + c0, w.rows, cols, w.ld), x.row(0), z.row(0) + c0);
      finish(0, 1, c0, cols);
    }
    return;
  }
  // gemm's own tiles (the same bits), each finished as soon as it is computed: one
  // parallel region per layer instead of three.
  const GemmTiles g = gemm_tiles(z.rows, z.cols, x.cols);
  if (g.count() == 1 || x.cols == 0) {
    gemm<T>(false, false, T(1), x, w, T(0), z);
    for_rows(z.rows, z.cols, [&](index_t i) { finish(i, 1, 0, z.cols); });
    return;
  }
  const int nt = omp_in_parallel() ? 1 : int(std::min<index_t>(omp_get_max_threads(), g.count()));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t t = 0; t < g.count(); ++t) {
    const index_t r0 = g.row0(t), c0 = g.col0(t), rows = g.height(t), cols = g.width(t);
    gemm_tile<T>(g, t, false, false, T(1), x, w, T(0),
                 Mat<T>(z.row(r0) + c0, rows, cols, z.ld));
    finish(r0, rows, c0, cols);
  }
}

template <class T>
void dense_backward(CMat<T> grad_a, CMat<T> z, CMat<T> a, CMat<T> x, CMat<T> w, T clip,
                    Activation act, Mat<T> grad_x, Mat<T> grad_w, Vec<T> grad_b, Mat<T> dz) {
  // Linear: dz is grad_a itself (no copy; the workspace stays untouched).
  CMat<T> d = grad_a;
  if (act != Activation::Linear) {
    const Simd simd = simd_level();
    for_row_ranges(dz.rows, dz.cols, [&](index_t r0, index_t r1) {
#ifdef PYMDBN_SIMD_VARIANTS
      if (simd == Simd::avx512)
        return sigmoid_grad_rows_avx512<T>(grad_a, z, a, clip, dz, r0, r1);
      if (simd == Simd::avx2) return sigmoid_grad_rows_avx2<T>(grad_a, z, a, clip, dz, r0, r1);
#endif
      (void)simd;
      sigmoid_grad_rows<T>(grad_a, z, a, clip, dz, r0, r1);
    });
    d = dz;
  }
  const index_t kc = gemm_k_chunk(grad_w.rows, grad_w.cols, x.rows, true, false);
  if (kc >= d.rows) {
    gemm<T>(true, false, T(1), x, d, T(0), grad_w);
    column_sums<T>(d, T(1), grad_b.data);
  } else {
    // A product that gemm cuts along k (a convolution's, over its (image, position)
    // rows): each chunk's column sums of dz in row order, on the thread and in the
    // parallel region of its partial product, then the chunks' sums in chunk order; the
    // same for any thread count. (column_sums would run one thread over all the rows of
    // a matrix of fewer than 64 columns, in a parallel region of its own.)
    const index_t n = d.cols, count = (d.rows + kc - 1) / kc;
    std::vector<T> part(std::size_t(count * n), T(0));
    gemm_tn_k_chunks<T>(T(1), x, d, T(0), grad_w, [&](index_t t, index_t k0, index_t rows) {
      T* acc = part.data() + t * n;
      for (index_t i = k0; i < k0 + rows; ++i) {
        const T* r = d.row(i);
#pragma omp simd
        for (index_t j = 0; j < n; ++j) acc[j] += r[j];
      }
    });
    for (index_t j = 0; j < n; ++j) grad_b[j] = part[j];
    for (index_t t = 1; t < count; ++t)
      for (index_t j = 0; j < n; ++j) grad_b[j] += part[t * n + j];
  }
  if (!grad_x.empty()) gemm<T>(false, true, T(1), d, w, T(0), grad_x);
}

// The double exp, log and power of the loss and of Adam's bias corrections. float64
// models: numerics.h's, the same on every CPU (glibc's round differently with and without
// FMA). float32 models keep the C library's, and their bits: a last-bit difference in
// double reaches a float result only where it straddles a float rounding boundary
// (about 2^-29 of such values).
template <class T>
double exp_of(double x) {
  if constexpr (std::is_same_v<T, double>) return exp_ieee(x);
  return std::exp(x);
}
template <class T>
double log_of(double x) {
  if constexpr (std::is_same_v<T, double>) return log_ieee(x);
  return std::log(x);
}
template <class T>
double pow_of(double b, std::int64_t t) {
  if constexpr (std::is_same_v<T, double>) return pow_int(b, t);
  return std::pow(b, double(t));
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
    for (index_t j = 0; j < k; ++j) sum += exp_of<T>(double(l[j]) - mx);
    const double log_sum = log_of<T>(sum), wi = (weight ? weight[i] : 1.0) / total;
    for (index_t j = 0; j < k; ++j) {
      const double pj = exp_of<T>(double(l[j]) - mx - log_sum);
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
  run_step(p.size, SgdStep<T>{p.data, g.data, v.data, lr, momentum, wd});
}

template <class T>
void adam_update(Vec<T> p, CVec<T> g, Vec<T> m, Vec<T> v, T lr, T beta1, T beta2, T eps,
                 std::int64_t t, T wd) {
  const T c1 = T(1) - T(pow_of<T>(double(beta1), t));
  const T c2 = T(1) - T(pow_of<T>(double(beta2), t));
  run_step(p.size, AdamStep<T>{p.data, g.data, m.data, v.data, lr, beta1, beta2, eps, wd, c1, c2});
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_DENSE)

#define PYMDBN_INSTANTIATE_ROW_PRODUCT(T) \
  template void row_product<T>(bool, CMat<T>, const T*, T*);
PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_ROW_PRODUCT)
#undef PYMDBN_INSTANTIATE_ROW_PRODUCT

}  // namespace pymdbn::cpu
