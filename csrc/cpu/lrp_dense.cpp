#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

namespace {

template <class T>
inline T stabilize(T z, T eps) {
  return z + (z >= T(0) ? eps : -eps);
}

// s = relevance / stabilize(z + shift), row by row (shift may be null).
template <class T>
void divide(CMat<T> relevance, Mat<T> z, const T* shift, T eps) {
  for_rows(z.rows, z.cols, [&](index_t i) {
    const T* r = relevance.row(i);
    T* zi = z.row(i);
    for (index_t j = 0; j < z.cols; ++j) zi[j] = r[j] / stabilize(zi[j] + (shift ? shift[j] : T(0)), eps);
  });
}

// out (op)= x * back, element-wise; sign = 0 overwrites.
template <class T>
void multiply_into(CMat<T> x, CMat<T> back, T scale, bool accumulate, Mat<T> out) {
  for_rows(out.rows, out.cols, [&](index_t i) {
    const T* xi = x.row(i);
    const T* bi = back.row(i);
    T* o = out.row(i);
#pragma omp simd
    for (index_t j = 0; j < out.cols; ++j)
      o[j] = (accumulate ? o[j] : T(0)) + scale * xi[j] * bi[j];
  });
}

// w's positive and negative parts, dense (ld = w.cols), row by row in parallel: read once
// from w as stored (no dense copy first), into buffers that are not zero-filled first.
// Done per call: with a serial dense copy and split first, one patient through three
// 4096 x 512 pathways took 17.7 ms ('epsilon_plus', 2 threads), 10.0 ms without.
template <class T>
struct SplitRows {
  std::unique_ptr<T[]> pos, neg;
  CMat<T> wp, wn;
};

template <class T>
SplitRows<T> split_rows(CMat<T> w) {
  const index_t rows = w.rows, cols = w.cols;
  SplitRows<T> s{std::unique_ptr<T[]>(new T[std::size_t(rows * cols)]),
                 std::unique_ptr<T[]>(new T[std::size_t(rows * cols)]), {}, {}};
  for_rows(rows, cols, [&](index_t i) {
    const T* wi = w.row(i);
    T* p = s.pos.get() + i * cols;
    T* q = s.neg.get() + i * cols;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      p[j] = wi[j] > T(0) ? wi[j] : T(0);
      q[j] = wi[j] < T(0) ? wi[j] : T(0);
    }
  });
  s.wp = CMat<T>(s.pos.get(), rows, cols);
  s.wn = CMat<T>(s.neg.get(), rows, cols);
  return s;
}

// z[j] += xp w+[j] + xn w-[j] over one row of w (the one-row kernel's first pass).
template <class T>
inline void add_sign_split(const T* __restrict wi, T xp, T xn, T* __restrict z, index_t n) {
#pragma omp simd
  for (index_t j = 0; j < n; ++j) {
    const T v = wi[j];
    z[j] += xp * (v > T(0) ? v : T(0)) + xn * (v < T(0) ? v : T(0));
  }
}

// (s . w+, s . w-) over one row of w (the one-row kernel's second pass).
template <class T>
inline void sign_split_dots(const T* __restrict wi, const T* __restrict s, index_t n, T* pos,
                            T* neg) {
  T p = 0, q = 0;
#pragma omp simd reduction(+ : p, q)
  for (index_t j = 0; j < n; ++j) {
    const T v = wi[j];
    p += (v > T(0) ? v : T(0)) * s[j];
    q += (v < T(0) ? v : T(0)) * s[j];
  }
  *pos = p;
  *neg = q;
}

// ZPlus / AlphaBeta for one sample, in two passes over w and no split copies: the
// batched form's products of one row are GEMVs over w+ and w- (four passes, plus the
// pass that splits w), which made one patient through three 4096 x 512 pathways 10 ms
// ('epsilon_plus', 2 threads). z_a = x+ w+ + x- w- + b_a (alpha part) and z_b = x+ w- +
// x- w+ + b_b (beta part) column block by column block, each column summed over the
// rows in order (any thread count: the same bits); then per input row one pass over w
// for the four sums of s_a and s_b against w's positive and negative parts.
template <class T>
void sign_split_one_row(CMat<T> x, CMat<T> w, const T* bias_pos, const T* bias_neg,
                        const T* relevance, T alpha, T beta, T eps, Mat<T> out) {
  const index_t n_in = w.rows, n_out = w.cols;
  const bool two = beta != T(0);
  std::vector<T> xin(x.row(0), x.row(0) + n_in);  // out may be x itself
  std::vector<T> sa(n_out, T(0)), sb(two ? n_out : 0, T(0));
  const RowBlocks rb = row_blocks(n_out, n_in * n_out);
  const int nt = omp_in_parallel() ? 1 : int(std::min<index_t>(omp_get_max_threads(), rb.count));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    ScopedFTZ ftz;
#pragma omp for schedule(static)
    for (index_t blk = 0; blk < rb.count; ++blk) {
      const index_t c0 = rb.begin(blk), c1 = std::min(n_out, c0 + rb.width);
      T* za = sa.data();
      T* zb = two ? sb.data() : nullptr;
      for (index_t i = 0; i < n_in; ++i) {
        const T xi = xin[i], xp = xi > T(0) ? xi : T(0), xn = xi < T(0) ? xi : T(0);
        if (xi == T(0)) continue;  // adds nothing (+-0 products) to sums that start at +0
        add_sign_split(w.row(i) + c0, xp, xn, za + c0, c1 - c0);
        if (two) add_sign_split(w.row(i) + c0, xn, xp, zb + c0, c1 - c0);
      }
      for (index_t j = c0; j < c1; ++j) {
        za[j] = relevance[j] / stabilize(za[j] + bias_pos[j], eps);
        if (two) zb[j] = relevance[j] / stabilize(zb[j] + bias_neg[j], eps);
      }
    }
    T* o = out.row(0);
#pragma omp for schedule(static)
    for (index_t i = 0; i < n_in; ++i) {
      T ap, an, bp = 0, bn = 0;  // s_a . w+, s_a . w-, s_b . w-, s_b . w+
      sign_split_dots(w.row(i), sa.data(), n_out, &ap, &an);
      if (two) sign_split_dots(w.row(i), sb.data(), n_out, &bn, &bp);
      const T xi = xin[i], xp = xi > T(0) ? xi : T(0), xn = xi < T(0) ? xi : T(0);
      T r = alpha * xp * ap + alpha * xn * an;
      if (two) r += -beta * xp * bp + -beta * xn * bn;
      o[i] = r;
    }
  }
}

}  // namespace

// Row sum and absolute row sum of one row, in double.
template <class T>
inline void row_totals(const T* o, index_t n, double* t) {
  double sum = 0, abs_sum = 0;
#pragma omp simd reduction(+ : sum, abs_sum)
  for (index_t j = 0; j < n; ++j) {
    sum += double(o[j]);
    abs_sum += double(o[j] < T(0) ? -o[j] : o[j]);
  }
  t[0] = sum;
  t[1] = abs_sum;
}

// out = x * (s w^T) element-wise (out may be x itself), and each row's totals, over gemm's
// tiles of s w^T: every tile is multiplied by x right after its product, and the rows of s
// are first filled by fill_s(i) in the same parallel region, so a layer costs one region
// (on the shared 2-core machines each region can wait a scheduler tick for a descheduled
// thread). The tiles and their calls are gemm's own, so the product is gemm's bit for
// bit, whatever the thread count; in place, each tile goes through a scratch first.
template <class T, class FillS>
void times_x_by_tiles(Mat<T> s, FillS fill_s, CMat<T> w, CMat<T> x, Mat<T> out,
                      double* totals) {
  const index_t n = out.rows, n_in = out.cols, n_out = s.cols;
  const bool in_place = out.data == x.data;
  const GemmTiles g = gemm_tiles(n, n_in, n_out);
  const index_t count = g.count();
  const bool parallel = count > 1 || n * std::max(n_in, n_out) >= kParallelWork;
  const int nt = omp_in_parallel() || !parallel || n < 2 ? 1 : omp_get_max_threads();
  // Row totals per column of tiles, added in column order afterwards.
  std::vector<double> part(totals ? std::size_t(g.cols * n * 2) : 0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    {
      ScopedFTZ ftz;
#pragma omp for schedule(static)
      for (index_t i = 0; i < n; ++i) fill_s(i);
    }
    std::unique_ptr<T[]> scratch;  // for the threads that get a tile
#pragma omp for schedule(static)
    for (index_t t = 0; t < count; ++t) {
      const index_t i0 = g.row0(t), j0 = g.col0(t), rb = g.height(t), cb = g.width(t);
      if (in_place && !scratch) scratch.reset(new T[std::size_t(g.tm * g.tn)]);
      Mat<T> dst = in_place ? Mat<T>(scratch.get(), rb, cb) : Mat<T>(out.row(i0) + j0, rb, cb,
                                                                         out.ld);
      // The GEMM without FTZ/DAZ, as gemm runs it: flushed denormal products would change
      // the sums. The product with x flushes, as the element-wise loops do.
      if (n_out == 0) {  // BLAS leaves C untouched for k = 0; the product is zero.
        for (index_t i = 0; i < rb; ++i) std::fill_n(dst.row(i), cb, T(0));
      } else {
        gemm_tile<T>(g, t, false, true, T(1), s, w, T(0), dst);
      }
      ScopedFTZ ftz;
      for (index_t i = 0; i < rb; ++i) {
        T* o = out.row(i0 + i) + j0;
        const T* other = in_place ? dst.row(i) : x.row(i0 + i) + j0;
#pragma omp simd
        for (index_t j = 0; j < cb; ++j) o[j] *= other[j];
        if (totals) row_totals(o, cb, part.data() + 2 * ((t % g.cols) * n + i0 + i));
      }
    }
  }
  if (totals) {
    for (index_t i = 0; i < n; ++i) {
      double sum = 0, abs_sum = 0;
      for (index_t cj = 0; cj < g.cols; ++cj) {
        sum += part[2 * (cj * n + i)];
        abs_sum += part[2 * (cj * n + i) + 1];
      }
      totals[2 * i] = sum;
      totals[2 * i + 1] = abs_sum;
    }
  }
}

// dst = x op(w), op(w) = w^T when trans: gemm, or for one row the float32 GEMVs of
// row_blocks, whatever the precision (a GEMM of one row packs all of w first, and
// rounding w to bfloat16 reads all of it once more; see dense_forward).
template <class T>
void product(CMat<T> x, CMat<T> w, bool trans, Mat<T> dst) {
  if (x.rows != 1) {
    gemm<T>(false, trans, T(1), x, w, T(0), dst);
    return;
  }
  const RowBlocks rb = row_blocks(dst.cols, w.rows * w.cols);
  const int nt = omp_in_parallel() ? 1 : int(std::min<index_t>(omp_get_max_threads(), rb.count));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t i = 0; i < rb.count; ++i) {
    const index_t c0 = rb.begin(i), cols = std::min(rb.width, dst.cols - c0);
    const CMat<T> block = trans ? CMat<T>(w.row(c0), cols, w.cols, w.ld)
                                : CMat<T>(w.data + c0, w.rows, cols, w.ld);
    row_product<T>(trans, block, x.row(0), dst.row(0) + c0);
  }
}

template <class T>
void lrp_rule(CMat<T> x, CMat<T> w, CVec<T> b, CMat<T> relevance, CMat<T> z_in,
              const LrpParams<T>& prm, Mat<T> out, double* totals);

template <class T>
void lrp_dense(CMat<T> x, CMat<T> w, CVec<T> b, CMat<T> relevance, CMat<T> z_in,
               const LrpParams<T>& prm, Mat<T> out, double* totals) {
  lrp_rule<T>(x, w, b, relevance, z_in, prm, out, totals);
  if (totals && prm.rule != LrpRule::Epsilon)  // the epsilon rule fills them in its last pass
    for_rows(out.rows, out.cols,
                  [&](index_t i) { row_totals(out.row(i), out.cols, totals + 2 * i); });
}

template <class T>
void lrp_rule(CMat<T> x, CMat<T> w, CVec<T> b, CMat<T> relevance, CMat<T> z_in,
              const LrpParams<T>& prm, Mat<T> out, double* totals) {
  const index_t n = x.rows, n_in = w.rows, n_out = w.cols;
  const T eps = prm.epsilon;
  std::vector<T> zero_bias(n_out, T(0));
  const T* bias = prm.use_bias ? b.data : zero_bias.data();
  std::unique_ptr<T[]> buf_s(new T[std::size_t(n * n_out)]);  // fully written before use
  std::vector<T> buf_back;
  if (prm.rule != LrpRule::Epsilon) buf_back.resize(n * n_in);
  Mat<T> s(buf_s.get(), n, n_out), back(buf_back.data(), n, n_in);
  auto backward = [&](CMat<T> sv, CMat<T> wv, Mat<T> dst) { product<T>(sv, wv, true, dst); };

  switch (prm.rule) {
    case LrpRule::Epsilon: {
      // s = relevance / stabilize(z), z the forward pre-activation (it includes the bias).
      auto fill_s = [&](index_t i) {
        const T* zi = z_in.row(i);
        const T* r = relevance.row(i);
        T* si = s.row(i);
        for (index_t j = 0; j < n_out; ++j)
          si[j] = r[j] / stabilize(zi[j] - (prm.use_bias ? T(0) : b[j]), eps);
      };
      if (n == 0) return;
      const bool have_z = !z_in.empty();
      if (!have_z) {
        product<T>(x, w, false, s);
        divide<T>(relevance, s, bias, eps);
      }
      if (n > 1) {  // out (or x itself) *= s w^T, tile by tile
        if (have_z)
          times_x_by_tiles<T>(s, fill_s, w, x, out, totals);
        else
          times_x_by_tiles<T>(s, [](index_t) {}, w, x, out, totals);
        return;
      }
      if (have_z) {
        ScopedFTZ ftz;
        fill_s(0);
      }
      // One sample: u = s w^T by GEMVs, into out or, in place, a scratch; then out *= x.
      std::vector<T> scratch(out.data == x.data ? std::size_t(n_in) : 0);
      T* u = scratch.empty() ? out.row(0) : scratch.data();
      product<T>(s, w, true, Mat<T>(u, 1, n_in));
      ScopedFTZ ftz;
      T* o = out.row(0);
      const T* other = scratch.empty() ? x.row(0) : u;
#pragma omp simd
      for (index_t j = 0; j < n_in; ++j) o[j] *= other[j];
      if (totals) row_totals(o, n_in, totals);
      return;
    }
    case LrpRule::Gamma: {
      std::vector<T> wg(n_in * n_out), bg(n_out);
      for (index_t i = 0; i < n_in * n_out; ++i) {
        const T v = w.data[(i / n_out) * w.ld + i % n_out];
        wg[i] = v + prm.gamma * (v > T(0) ? v : T(0));
      }
      for (index_t j = 0; j < n_out; ++j) bg[j] = bias[j] + prm.gamma * (bias[j] > T(0) ? bias[j] : T(0));
      CMat<T> wgv(wg.data(), n_in, n_out);
      product<T>(x, wgv, false, s);
      divide<T>(relevance, s, bg.data(), eps);
      backward(s, wgv, back);
      multiply_into<T>(x, back, T(1), false, out);
      return;
    }
    case LrpRule::ZPlus:
    case LrpRule::AlphaBeta: {
      const T alpha = prm.rule == LrpRule::ZPlus ? T(1) : prm.alpha;
      const T beta = prm.rule == LrpRule::ZPlus ? T(0) : prm.beta;
      const SplitRows<T> bs = split_rows(CMat<T>(bias, 1, n_out));
      if (n == 1) {
        sign_split_one_row<T>(x, w, bs.pos.get(), bs.neg.get(), relevance.row(0), alpha,
                              beta, eps, out);
        return;
      }
      const SplitRows<T> ws = split_rows(w);
      const CMat<T> wp = ws.wp, wn = ws.wn;
      bool has_negative = false;
      for (index_t i = 0; i < n && !has_negative; ++i)
        for (index_t j = 0; j < n_in; ++j) has_negative |= x(i, j) < T(0);
      SplitRows<T> xs;  // inputs of both signs: x = x+ + x-
      if (has_negative) xs = split_rows(x);
      const CMat<T> xp = has_negative ? xs.wp : x, xn = xs.wn;
      // One part: z = xp wa + xn wb + bias_part; out += scale (xp (s wa^T) + xn (s wb^T)).
      auto part = [&](CMat<T> wa, CMat<T> wb, const T* bias_part, T scale, bool accumulate) {
        product<T>(xp, wa, false, s);
        if (has_negative) gemm<T>(false, false, T(1), xn, wb, T(1), s);
        divide<T>(relevance, s, bias_part, eps);
        backward(s, wa, back);
        multiply_into<T>(xp, back, scale, accumulate, out);
        if (has_negative) {
          backward(s, wb, back);
          multiply_into<T>(xn, back, scale, true, out);
        }
      };
      part(wp, wn, bs.pos.get(), alpha, false);
      if (beta != T(0)) part(wn, wp, bs.neg.get(), -beta, true);
      return;
    }
    case LrpRule::ZBox: {
      const SplitRows<T> ws = split_rows(w);
      const CMat<T> wp = ws.wp, wn = ws.wn;
      // z = x w - low w+ - high w- + b: the bound terms are one vector per layer.
      std::vector<T> shift(n_out);
      for (index_t j = 0; j < n_out; ++j) {
        double acc = double(bias[j]);
        for (index_t i = 0; i < n_in; ++i)
          acc -= double(prm.low[i]) * double(wp(i, j)) + double(prm.high[i]) * double(wn(i, j));
        shift[j] = T(acc);
      }
      product<T>(x, w, false, s);
      divide<T>(relevance, s, shift.data(), eps);
      backward(s, w, back);
      multiply_into<T>(x, back, T(1), false, out);
      std::vector<T> buf_b2(n * n_in);
      Mat<T> back2(buf_b2.data(), n, n_in);
      backward(s, wp, back);
      backward(s, wn, back2);
      for_rows(n, n_in, [&](index_t i) {
        T* o = out.row(i);
        const T* bp = back.row(i);
        const T* bn = back2.row(i);
        for (index_t j = 0; j < n_in; ++j) o[j] -= prm.low[j] * bp[j] + prm.high[j] * bn[j];
      });
      return;
    }
    case LrpRule::Flat: {
      for_rows(n, n_in, [&](index_t i) {
        double total = 0;
        const T* r = relevance.row(i);
        for (index_t j = 0; j < n_out; ++j) total += double(r[j]);
        std::fill_n(out.row(i), n_in, T(total / double(n_in)));
      });
      return;
    }
    case LrpRule::WSquare: {
      std::vector<T> w2(n_in * n_out), col(n_out, T(0));
      for (index_t i = 0; i < n_in; ++i)
        for (index_t j = 0; j < n_out; ++j) {
          const T v = w(i, j) * w(i, j);
          w2[i * n_out + j] = v;
          col[j] += v;
        }
      for (index_t i = 0; i < n_in; ++i)
        for (index_t j = 0; j < n_out; ++j) w2[i * n_out + j] /= stabilize(col[j], eps);
      product<T>(relevance, CMat<T>(w2.data(), n_in, n_out), true, out);
      return;
    }
  }
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_LRP)

}  // namespace pymdbn::cpu
