// Relevance through a dense layer: the CPU's GEMMs (csrc/cpu/lrp_dense.cpp) through cuBLAS
// and its element-wise passes as kernels that keep its arithmetic order, so only the
// GEMMs round differently.
#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

template <class T>
__device__ inline T stabilize(T z, T eps) {
  return z + (z >= T(0) ? eps : -eps);
}

template <class T>
__device__ inline T positive_part(T v) {
  return v > T(0) ? v : T(0);
}

template <class T>
__device__ inline T negative_part(T v) {
  return v < T(0) ? v : T(0);
}

// --- denominators: z(i, j) before stabilisation, in the CPU's order ----------------

template <class T>
struct FromForwardZ {  // the forward pre-activation, which includes the bias
  CMat<T> z;
  CVec<T> b;
  bool use_bias;
  __device__ T operator()(index_t i, index_t j) const {
    return z(i, j) - (use_bias ? T(0) : b[j]);
  }
};

template <class T>
struct PlusBias {
  CMat<T> s;
  CVec<T> b;
  bool use_bias;
  __device__ T operator()(index_t i, index_t j) const {
    return s(i, j) + (use_bias ? b[j] : T(0));
  }
};

template <class T>
struct PlusGammaBias {
  CMat<T> s;
  CVec<T> b;
  bool use_bias;
  T gamma;
  __device__ T operator()(index_t i, index_t j) const {
    const T bias = use_bias ? b[j] : T(0);
    // The CPU's bg, computed on its main thread (no FTZ); the sum under FTZ, as its divide.
    return s(i, j) + add_rn(bias, mul_rn(gamma, positive_part(bias)));
  }
};

template <class T>
struct PlusShift {
  CMat<T> s;
  const T* shift;
  __device__ T operator()(index_t i, index_t j) const { return s(i, j) + shift[j]; }
};

// z+ or z- of z+/alpha-beta: s1 = xp wa, s2 = xn wb; the CPU adds s2 (one BLAS call with
// beta = 1) only when x has a negative entry.
template <class T>
struct SplitSum {
  CMat<T> s1, s2;
  const int* has_negative;
  CVec<T> b;
  bool use_bias, positive;
  __device__ T operator()(index_t i, index_t j) const {
    const T z = *has_negative ? s1(i, j) + s2(i, j) : s1(i, j);
    const T bias = use_bias ? b[j] : T(0);
    return z + (positive ? positive_part(bias) : negative_part(bias));
  }
};

// s = relevance / stabilize(z); z may read s itself (same element, read first).
template <class T, class Z>
__global__ void divide_kernel(CMat<T> relevance, Mat<T> s, T eps, Z z) {
  PYMDBN_GRID_STRIDE(e, s.rows * s.cols) {
    const index_t i = e / s.cols, j = e - i * s.cols;
    s(i, j) = relevance(i, j) / stabilize(z(i, j), eps);
  }
}

// out = x * back; back may be out and out may be x (each element read before written).
template <class T>
__global__ void times_x_kernel(CMat<T> x, CMat<T> back, Mat<T> out) {
  PYMDBN_GRID_STRIDE(e, out.rows * out.cols) {
    const index_t i = e / out.cols, j = e - i * out.cols;
    out(i, j) = x(i, j) * back(i, j);
  }
}

// The CPU's multiply_into, then (when *has_negative) its second call on xn and back2.
// back may be out when not accumulating.
template <class T>
__global__ void multiply_into_kernel(CMat<T> xp, CMat<T> back, CMat<T> xn, CMat<T> back2,
                                     const int* has_negative, T scale, bool accumulate,
                                     Mat<T> out) {
  PYMDBN_GRID_STRIDE(e, out.rows * out.cols) {
    const index_t i = e / out.cols, j = e - i * out.cols;
    T o = (accumulate ? out(i, j) : T(0)) + scale * xp(i, j) * back(i, j);
    if (has_negative && *has_negative) o = o + scale * xn(i, j) * back2(i, j);
    out(i, j) = o;
  }
}

// z-box: out = x * out (out holds s w^T), then minus the bound terms, as the CPU's two passes.
template <class T>
__global__ void zbox_kernel(CMat<T> x, CMat<T> back_pos, CMat<T> back_neg, const T* low,
                            const T* high, Mat<T> out) {
  PYMDBN_GRID_STRIDE(e, out.rows * out.cols) {
    const index_t i = e / out.cols, j = e - i * out.cols;
    T o = T(0) + T(1) * x(i, j) * out(i, j);
    o -= low[j] * back_pos(i, j) + high[j] * back_neg(i, j);
    out(i, j) = o;
  }
}

// --- weights and inputs ----------------------------------------------------------------
// The CPU prepares the gamma, z-box and w-square weights on its main thread, without FTZ:
// their arithmetic and conversions use common.cuh's *_rn forms.

// Contiguous w+ and w-.
template <class T>
__global__ void split_w_kernel(CMat<T> w, T* wp, T* wn) {
  PYMDBN_GRID_STRIDE(e, w.rows * w.cols) {
    const index_t i = e / w.cols, j = e - i * w.cols;
    const T v = w(i, j);
    wp[e] = positive_part(v);
    wn[e] = negative_part(v);
  }
}

template <class T>
__global__ void gamma_w_kernel(CMat<T> w, T gamma, T* wg) {
  PYMDBN_GRID_STRIDE(e, w.rows * w.cols) {
    const index_t i = e / w.cols, j = e - i * w.cols;
    const T v = w(i, j);
    wg[e] = add_rn(v, mul_rn(gamma, positive_part(v)));
  }
}

// Sets *flag when some entry is negative (every writer stores 1: the race is benign).
template <class T>
__global__ void any_negative_kernel(CMat<T> x, int* flag) {
  bool negative = false;
  PYMDBN_GRID_STRIDE(e, x.rows * x.cols) {
    const index_t i = e / x.cols, j = e - i * x.cols;
    negative |= x(i, j) < T(0);
  }
  if (negative) *flag = 1;
}

// x+ and x- when x has a negative entry; else x itself and zeros (the CPU then uses x and
// skips the x- terms, which the flag skips here).
template <class T>
__global__ void split_x_kernel(CMat<T> x, const int* has_negative, T* xp, T* xn) {
  const bool split = *has_negative != 0;
  PYMDBN_GRID_STRIDE(e, x.rows * x.cols) {
    const index_t i = e / x.cols, j = e - i * x.cols;
    const T v = x(i, j);
    xp[e] = split ? positive_part(v) : v;
    xn[e] = split ? negative_part(v) : T(0);
  }
}

// z-box: shift[j] = bias[j] - low w+[:, j] - high w-[:, j] in double, one thread per
// column summing in row order as the CPU.
template <class T>
__global__ void zbox_shift_kernel(CMat<T> w, CVec<T> b, bool use_bias, const T* low,
                                  const T* high, T* shift) {
  PYMDBN_GRID_STRIDE(j, w.cols) {
    double acc = convert_rn<double>(use_bias ? b[j] : T(0));
    for (index_t i = 0; i < w.rows; ++i) {
      const T v = w(i, j);
      acc -= convert_rn<double>(low[i]) * convert_rn<double>(positive_part(v)) +
             convert_rn<double>(high[i]) * convert_rn<double>(negative_part(v));
    }
    shift[j] = convert_rn<T>(acc);
  }
}

// w-square: col[j] = sum_i w(i, j)^2 in T, in row order as the CPU.
template <class T>
__global__ void square_column_sums_kernel(CMat<T> w, T* col) {
  PYMDBN_GRID_STRIDE(j, w.cols) {
    T acc = T(0);
    for (index_t i = 0; i < w.rows; ++i) acc = add_rn(acc, mul_rn(w(i, j), w(i, j)));
    col[j] = acc;
  }
}

template <class T>
__global__ void wsquare_kernel(CMat<T> w, const T* col, T eps, T* w2) {
  PYMDBN_GRID_STRIDE(e, w.rows * w.cols) {
    const index_t i = e / w.cols, j = e - i * w.cols;
    const T c = col[j];  // a sum of squares, >= 0: the sign test picks the CPU's branch
    w2[e] = div_rn(mul_rn(w(i, j), w(i, j)), add_rn(c, c >= T(0) ? eps : -eps));
  }
}

// flat: value[i] = sum_j relevance(i, j) / n_in, in double and column order as the CPU.
template <class T>
__global__ void flat_value_kernel(CMat<T> relevance, index_t n_in, T* value) {
  PYMDBN_GRID_STRIDE(i, relevance.rows) {
    double total = 0;
    for (index_t j = 0; j < relevance.cols; ++j) total += double(relevance(i, j));
    value[i] = T(total / double(n_in));
  }
}

template <class T>
__global__ void fill_rows_kernel(const T* value, Mat<T> out) {
  PYMDBN_GRID_STRIDE(e, out.rows * out.cols) {
    const index_t i = e / out.cols, j = e - i * out.cols;
    out(i, j) = value[i];
  }
}

// totals(i) = (sum_j out(i, j), sum_j |out(i, j)|) in double: one warp per row, lanes
// strided over the columns, then warp_sum, so the result is the same every run.
template <class T>
__global__ void totals_kernel(CMat<T> out, double* totals) {
  const int lane = int(threadIdx.x % kWarp);
  const index_t warps = index_t(gridDim.x) * (blockDim.x / kWarp);
  for (index_t i = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; i < out.rows;
       i += warps) {
    double sum = 0, abs_sum = 0;
    const T* o = out.row(i);
    for (index_t j = lane; j < out.cols; j += kWarp) {
      const T v = o[j];
      sum += double(v);
      abs_sum += double(v < T(0) ? -v : v);
    }
    sum = warp_sum(sum);  // i is the same in the whole warp
    abs_sum = warp_sum(abs_sum);
    if (lane == 0) {
      totals[2 * i] = sum;
      totals[2 * i + 1] = abs_sum;
    }
  }
}

// Rows per block of the epsilon rule's backward pass: the in-place path needs a scratch
// of this many rows, and the out-of-place path takes the same blocks so both call the
// same GEMMs (cuBLAS may pick another algorithm for another shape). A multiple of 64 keeps
// every block as aligned as the first.
index_t epsilon_block_rows(index_t n_in) {
  constexpr index_t kScratch = index_t(1) << 23;  // elements
  const index_t rows = kScratch / (n_in > 0 ? n_in : 1) / 64 * 64;
  return rows > 64 ? rows : 64;
}

template <class T>
void lrp_rule(CMat<T> x, CMat<T> w, CVec<T> b, CMat<T> relevance, CMat<T> z_in,
              const LrpParams<T>& prm, Mat<T> out) {
  const index_t n = x.rows, n_in = w.rows, n_out = w.cols;
  const T eps = prm.epsilon;
  const bool ub = prm.use_bias;
  Buffer<T> buf_s(n * n_out);
  Mat<T> s(buf_s.get(), n, n_out);
  const index_t ns = n * n_out, nx = n * n_in, nw = n_in * n_out;

  switch (prm.rule) {
    case LrpRule::Epsilon: {
      if (!z_in.empty()) {
        launch(ns, divide_kernel<T, FromForwardZ<T>>, relevance, s, eps,
               FromForwardZ<T>{z_in, b, ub});
      } else {
        gemm<T>(false, false, T(1), x, w, T(0), s);
        launch(ns, divide_kernel<T, PlusBias<T>>, relevance, s, eps, PlusBias<T>{s, b, ub});
      }
      // In place over x, each block of rows of s w^T goes through a scratch and is
      // multiplied into out before the next block is read; x is read nowhere else. The
      // scratch keeps out's row stride, so cuBLAS sees the same C layout in both paths.
      const bool in_place = out.data == x.data;
      const index_t block = epsilon_block_rows(n_in);
      Buffer<T> scratch(in_place ? (n < block ? n : block) * out.ld : 0);
      for (index_t i0 = 0; i0 < n; i0 += block) {
        const index_t rows = n - i0 < block ? n - i0 : block;
        const CMat<T> sb(s.row(i0), rows, n_out, n_out);
        const Mat<T> ob(out.row(i0), rows, n_in, out.ld);
        const Mat<T> back = in_place ? Mat<T>(scratch.get(), rows, n_in, out.ld) : ob;
        gemm<T>(false, true, T(1), sb, w, T(0), back);
        launch(rows * n_in, times_x_kernel<T>, CMat<T>(x.row(i0), rows, n_in, x.ld),
               CMat<T>(back), ob);
      }
      return;
    }
    case LrpRule::Gamma: {
      Buffer<T> buf_wg(nw);
      launch(nw, gamma_w_kernel<T>, w, prm.gamma, buf_wg.get());
      const CMat<T> wg(buf_wg.get(), n_in, n_out);
      gemm<T>(false, false, T(1), x, wg, T(0), s);
      launch(ns, divide_kernel<T, PlusGammaBias<T>>, relevance, s, eps,
             PlusGammaBias<T>{s, b, ub, prm.gamma});
      gemm<T>(false, true, T(1), s, wg, T(0), out);  // the CPU's `back`, here out itself
      launch(nx, multiply_into_kernel<T>, x, CMat<T>(out), CMat<T>(), CMat<T>(),
             static_cast<const int*>(nullptr), T(1), false, out);
      return;
    }
    case LrpRule::ZPlus:
    case LrpRule::AlphaBeta: {
      const T alpha = prm.rule == LrpRule::ZPlus ? T(1) : prm.alpha;
      const T beta = prm.rule == LrpRule::ZPlus ? T(0) : prm.beta;
      Buffer<T> buf_wp(nw), buf_wn(nw);
      launch(nw, split_w_kernel<T>, w, buf_wp.get(), buf_wn.get());
      const CMat<T> wp(buf_wp.get(), n_in, n_out), wn(buf_wn.get(), n_in, n_out);
      // Whether x has a negative entry stays on the device (no synchronisation): the x-
      // GEMMs always run and the element-wise passes use their results only when it does.
      Buffer<int> flag(1);
      PYMDBN_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0, sizeof(int), stream()));
      launch(nx, any_negative_kernel<T>, x, flag.get());
      Buffer<T> buf_xp(nx), buf_xn(nx);
      launch(nx, split_x_kernel<T>, x, static_cast<const int*>(flag.get()), buf_xp.get(),
             buf_xn.get());
      const CMat<T> xp(buf_xp.get(), n, n_in), xn(buf_xn.get(), n, n_in);
      Buffer<T> buf_s2(ns), buf_back(beta != T(0) ? nx : 0), buf_back2(nx);
      const Mat<T> s2(buf_s2.get(), n, n_out), back2(buf_back2.get(), n, n_in);
      // z = xp wa + xn wb + bias part; out (+)= scale (xp (s wa^T) + xn (s wb^T)).
      auto part = [&](CMat<T> wa, CMat<T> wb, bool positive, T scale, bool accumulate) {
        gemm<T>(false, false, T(1), xp, wa, T(0), s);
        gemm<T>(false, false, T(1), xn, wb, T(0), s2);
        launch(ns, divide_kernel<T, SplitSum<T>>, relevance, s, eps,
               SplitSum<T>{s, s2, flag.get(), b, ub, positive});
        const Mat<T> back = accumulate ? Mat<T>(buf_back.get(), n, n_in) : out;
        gemm<T>(false, true, T(1), s, wa, T(0), back);
        gemm<T>(false, true, T(1), s, wb, T(0), back2);
        launch(nx, multiply_into_kernel<T>, xp, CMat<T>(back), xn, CMat<T>(back2),
               static_cast<const int*>(flag.get()), scale, accumulate, out);
      };
      part(wp, wn, true, alpha, false);
      if (beta != T(0)) part(wn, wp, false, -beta, true);
      return;
    }
    case LrpRule::ZBox: {
      Buffer<T> buf_wp(nw), buf_wn(nw), buf_shift(n_out);
      launch(nw, split_w_kernel<T>, w, buf_wp.get(), buf_wn.get());
      const CMat<T> wp(buf_wp.get(), n_in, n_out), wn(buf_wn.get(), n_in, n_out);
      launch(n_out, zbox_shift_kernel<T>, w, b, ub, prm.low, prm.high, buf_shift.get());
      gemm<T>(false, false, T(1), x, w, T(0), s);
      launch(ns, divide_kernel<T, PlusShift<T>>, relevance, s, eps,
             PlusShift<T>{s, buf_shift.get()});
      Buffer<T> buf_bp(nx), buf_bn(nx);
      const Mat<T> bp(buf_bp.get(), n, n_in), bn(buf_bn.get(), n, n_in);
      gemm<T>(false, true, T(1), s, w, T(0), out);
      gemm<T>(false, true, T(1), s, wp, T(0), bp);
      gemm<T>(false, true, T(1), s, wn, T(0), bn);
      launch(nx, zbox_kernel<T>, x, CMat<T>(bp), CMat<T>(bn), prm.low, prm.high, out);
      return;
    }
    case LrpRule::Flat: {
      Buffer<T> value(n);
      launch(n, flat_value_kernel<T>, relevance, n_in, value.get());
      launch(nx, fill_rows_kernel<T>, static_cast<const T*>(value.get()), out);
      return;
    }
    case LrpRule::WSquare: {
      Buffer<T> col(n_out), buf_w2(nw);
      launch(n_out, square_column_sums_kernel<T>, w, col.get());
      launch(nw, wsquare_kernel<T>, w, static_cast<const T*>(col.get()), eps, buf_w2.get());
      gemm<T>(false, true, T(1), relevance, CMat<T>(buf_w2.get(), n_in, n_out), T(0), out);
      return;
    }
  }
}

}  // namespace

template <class T>
void lrp_dense(CMat<T> x, CMat<T> w, CVec<T> b, CMat<T> relevance, CMat<T> z_in,
               const LrpParams<T>& prm, Mat<T> out, double* totals) {
  if (!out.empty()) lrp_rule<T>(x, w, b, relevance, z_in, prm, out);
  if (totals) launch(out.rows * kWarp, totals_kernel<T>, CMat<T>(out), totals);
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_LRP)

}  // namespace pymdbn::cuda
