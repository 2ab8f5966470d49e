// CD-k / PCD-k: the gradient step, the apply step and the fused epoch that loops over
// them without leaving C++. The epoch computes exactly what cd_gradient followed by
// cd_apply computes for each mini-batch, so the two paths are the same bit for bit.
#include <memory>
#include <vector>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

namespace {

// Columns per chunk of the weight update: an n_hidden x chunk scratch of about 1 MiB,
// which a core's L2 (2 MiB on the Xeon this was written on, 1 MiB on AMD Zen 4) keeps
// beside the rows of v_w and w streaming through. Smaller chunks repack op(A) = [ph0;
// -phn]^T more often (once per chunk: 0.5M elements at H = 1024, B = 256). CD-1 epochs
// at (4096, 1024, 256), N = 2560, 2 threads, medians of 5 alternating runs: 0.64 s with
// 512 KiB chunks, 0.65 s with 1 MiB, 0.61 s with 2 MiB (within this VM's run-to-run
// spread of 20-30%).
index_t update_chunk(index_t n_hidden, std::size_t elem_size) {
  const index_t c = index_t((std::size_t(1) << 20) / (std::size_t(std::max<index_t>(n_hidden, 1)) * elem_size));
  return std::max<index_t>(16, c / 16 * 16);
}

// The weight update over one column chunk (columns c0 + [0, g.cols)):
// v_w = mom v_w + g + pull_j vbar - decay w, w += v_w. Every scalar is a parameter: read
// through the caller's closure, GCC reloaded mom and decay from memory at every element
// (a store to v_w might have changed them) and kept to SSE. Compiled per SIMD variant
// like the element-wise loops (common.h): the same bits at every width.
template <class T>
PYMDBN_ALWAYS_INLINE void update_rows(Mat<T> w, Mat<T> v_w, CMat<T> g, index_t c0,
                                      const T* vbar, const T* pull, T mom, T decay) {
  const index_t n = g.cols;
  const T* vb = vbar + c0;
  const bool plain = mom == T(0) && decay == T(0);
  for (index_t j = 0; j < g.rows; ++j) {
    T* __restrict vw = v_w.row(j) + c0;
    T* __restrict wj = w.row(j) + c0;
    const T* __restrict gj = g.row(j);
    const T pj = pull[j];
    if (plain) {  // no momentum, no decay: v_w is written, not read
#pragma omp simd
      for (index_t i = 0; i < n; ++i) {
        const T vij = flush_denormal(gj[i] + pj * vb[i]);
        vw[i] = vij;
        wj[i] += vij;
      }
      continue;
    }
#pragma omp simd
    for (index_t i = 0; i < n; ++i) {
      const T vij = flush_denormal(mom * vw[i] + gj[i] + pj * vb[i] - decay * wj[i]);
      vw[i] = vij;
      wj[i] += vij;
    }
  }
}
#ifdef PYMDBN_SIMD_VARIANTS
template <class T>
PYMDBN_TARGET_AVX2 void update_rows_avx2(Mat<T> w, Mat<T> v_w, CMat<T> g, index_t c0,
                                         const T* vbar, const T* pull, T mom, T decay) {
  update_rows(w, v_w, g, c0, vbar, pull, mom, decay);
}
template <class T>
PYMDBN_TARGET_AVX512 void update_rows_avx512(Mat<T> w, Mat<T> v_w, CMat<T> g, index_t c0,
                                             const T* vbar, const T* pull, T mom, T decay) {
  update_rows(w, v_w, g, c0, vbar, pull, mom, decay);
}
#endif

}  // namespace

template <class T>
double cd_gradient(CMat<T> v0, CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, Mat<T> chain,
                   const CDConfig<T>& cfg, std::uint64_t step, std::uint64_t row_offset,
                   Mat<T> h, Mat<T> v) {
  const index_t nv = w.cols, nh = w.rows, b = v0.rows;
  // v = [v0; vs] and h = [ph0; phn] (phn negated at the end), so that cd_apply's
  // gradient products become one GEMM over 2b rows: [ph0; -phn]^T [v0; vs].
  Mat<T> v0_out = v.top(b), vs = v.bottom(b), ph0 = h.top(b), phn = h.bottom(b);
  if (v0_out.data != v0.data)
    for_rows(b, nv, [&](index_t i) { std::copy_n(v0.row(i), nv, v0_out.row(i)); });
  // Fully written before they are read.
  std::unique_ptr<T[]> buf_vm(new T[std::size_t(b * nv)]), buf_h0(new T[std::size_t(b * nh)]);
  Mat<T> vm(buf_vm.get(), b, nv), h0(buf_h0.get(), b, nh);
  const std::uint64_t base = step * 256u;
  auto rng = [&](std::uint64_t j) { return CounterRNG{cfg.seed, base + j, row_offset}; };
  PinnedBf16 w16(w);  // bfloat16 products: the weights rounded once for the step's 2k + 1

  // Positive phase; h0 starts the chain for CD and gives the reconstruction error.
  gibbs_hidden<T>(v0, w, b_hidden, cfg.clip, rng(0), ph0, h0);
  Mat<T> hc = cfg.persistent ? chain.top(b) : h0;
  double sq = 0;
  auto add_error = [&](CMat<T> mean) {
    std::vector<double> row_sq(b);
    for_rows(b, nv, [&](index_t i) {
      double acc = 0;
      for (index_t j = 0; j < nv; ++j) {
        const double d = double(v0(i, j)) - double(mean(i, j));
        acc += d * d;
      }
      row_sq[i] = acc;
    });
    for (double r : row_sq) sq += r;  // row order: independent of threads
  };
  if (cfg.persistent) {
    std::unique_ptr<T[]> buf_vr(new T[std::size_t(b * nv)]);
    Mat<T> vr(buf_vr.get(), b, nv);
    if (cfg.visible == Visible::Gaussian)
      affine<T>(h0, w, false, b_visible, vr);
    else
      affine_sigmoid<T>(h0, w, false, b_visible, cfg.clip, vr);
    add_error(vr);
  }

  // Negative phase: k alternating half-steps; hidden statistics use probabilities.
  for (int t = 0; t < cfg.k; ++t) {
    gibbs_visible<T>(hc, w, b_visible, cfg.visible, cfg.clip, rng(1 + 2 * t), vm, vs);
    if (t == 0 && !cfg.persistent) add_error(vm);
    affine_sigmoid<T>(vs, w, true, b_hidden, cfg.clip, phn);
    if (t + 1 < cfg.k || cfg.persistent) sample_bernoulli<T>(phn, rng(2 + 2 * t), hc);
  }
  for_rows(b, nh, [&](index_t i) {
    T* p = phn.row(i);
#pragma omp simd
    for (index_t j = 0; j < nh; ++j) p[j] = -p[j];
  });
  return sq;
}

template <class T>
void cd_apply(CMat<T> h, CMat<T> v, RBMState<T> s, const CDConfig<T>& cfg) {
  const index_t nv = s.w.cols, nh = s.w.rows, b = h.rows / 2;
  std::vector<T> vbar(nv), vneg(nv), qhat(nh), hneg(nh);
  // Update: velocity = momentum * velocity + lr * gradient; parameters += velocity.
  const T lr = cfg.learning_rate, mom = cfg.momentum, inv_b = T(1) / T(b);
  column_sums<T>(v.top(b), inv_b, vbar.data());
  column_sums<T>(v.bottom(b), inv_b, vneg.data());
  column_sums<T>(h.top(b), inv_b, qhat.data());
  // The mean of phn from -phn: negation is exact and the probabilities are >= 0, so
  // this equals the sum before negation (up to the sign of a zero, which qhat - hneg
  // below does not see, qhat being >= +0).
  column_sums<T>(h.bottom(b), -inv_b, hneg.data());
  const bool sparse = cfg.sparsity_cost > T(0);
  for (index_t i = 0; i < nv; ++i) {
    s.v_b_visible[i] = flush_denormal(mom * s.v_b_visible[i] + lr * (vbar[i] - vneg[i]));
    s.b_visible[i] += s.v_b_visible[i];
  }
  std::vector<T>& sp = hneg;  // reused: sparsity pull per hidden unit
  for (index_t j = 0; j < nh; ++j) {
    const T pull = sparse ? cfg.sparsity_cost * (cfg.sparsity_target - qhat[j]) : T(0);
    s.v_b_hidden[j] = flush_denormal(mom * s.v_b_hidden[j] + lr * (qhat[j] - hneg[j] + pull));
    s.b_hidden[j] += s.v_b_hidden[j];
    sp[j] = lr * pull;
  }
  // The weight gradient (lr / b) [ph0; -phn]^T [v0; vs] in column chunks, each applied
  // while in cache: v_w and w are then read and written once per step, where a whole
  // product before the update pass wrote v_w out and read it back (about 16 MB each way
  // at (V, H) = (4096, 1024)).
  const T decay = lr * cfg.weight_decay;
  // The update streams w and v_w through memory once per step (32 MB each way at (4096,
  // 1024)), the largest cost after the products: without momentum and decay update_rows
  // skips the read of v_w (0 * v_w added nothing but the sign of a zero).
  const Simd simd = simd_level();
  gemm_column_chunks<T>(true, lr * inv_b, h, v, update_chunk(nh, sizeof(T)),
                        [&](index_t c0, CMat<T> g) {
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512)
      return update_rows_avx512<T>(s.w, s.v_w, g, c0, vbar.data(), sp.data(), mom, decay);
    if (simd == Simd::avx2)
      return update_rows_avx2<T>(s.w, s.v_w, g, c0, vbar.data(), sp.data(), mom, decay);
#endif
    (void)simd;
    update_rows<T>(s.w, s.v_w, g, c0, vbar.data(), sp.data(), mom, decay);
  });
}

template <class T>
EpochStats cd_epoch(CMat<T> x, const std::int64_t* order, std::int64_t n, std::int64_t batch_size,
                    RBMState<T> s, const CDConfig<T>& cfg, std::uint64_t first_step) {
  const index_t nv = s.w.cols, nh = s.w.rows, B = batch_size;
  std::vector<T> buf_v(2 * B * nv), buf_h(2 * B * nh);
  EpochStats stats;
  for (index_t start = 0, step = 0; start < n; start += B, ++step) {
    const index_t b = std::min(B, n - start);
    Mat<T> v(buf_v.data(), 2 * b, nv), h(buf_h.data(), 2 * b, nh), v0 = v.top(b);
    // The batch is gathered straight into v's top half, where cd_gradient keeps it.
    for_rows(b, nv, [&](index_t i) { std::copy_n(x.row(order[start + i]), nv, v0.row(i)); });
    stats.sum_squared_error += cd_gradient<T>(v0, s.w, s.b_visible, s.b_hidden, s.chain, cfg,
                                              first_step + std::uint64_t(step), 0, h, v);
    cd_apply<T>(h, v, s, cfg);
    ++stats.n_batches;
  }
  return stats;
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_CD)

}  // namespace pymdbn::cpu
