#include <vector>

#include "common.h"
#include "pymdbn/ops.h"

namespace pymdbn {

template <class T>
EpochStats cd_epoch(CMat<T> x, const std::int64_t* order, std::int64_t n, std::int64_t batch_size,
                    RBMState<T> s, const CDConfig<T>& cfg, std::uint64_t first_step) {
  const index_t nv = s.w.cols, nh = s.w.rows, B = batch_size;
  // v0 and vs share one buffer, as do ph0 and phn, so that the two gradient products
  // become one GEMM over 2b rows: [ph0; -phn]^T [v0; vs].
  std::vector<T> buf_v(2 * B * nv), buf_vm(B * nv), buf_vr;
  std::vector<T> buf_ph(2 * B * nh), buf_h0(B * nh);
  std::vector<T> vbar(nv), vneg(nv), qhat(nh), hneg(nh);
  if (cfg.persistent) buf_vr.resize(B * nv);
  const CMat<T> w(s.w);
  EpochStats stats;

  for (index_t start = 0, step = 0; start < n; start += B, ++step) {
    const index_t b = std::min(B, n - start);
    Mat<T> v0(buf_v.data(), b, nv), vs(buf_v.data() + b * nv, b, nv), vm(buf_vm.data(), b, nv);
    Mat<T> ph0(buf_ph.data(), b, nh), phn(buf_ph.data() + b * nh, b, nh), h0(buf_h0.data(), b, nh);
    const std::uint64_t base = (first_step + std::uint64_t(step)) * 256u;
    auto rng = [&](std::uint64_t j) { return CounterRNG{cfg.seed, base + j}; };

    cpu::for_rows(b, nv, [&](index_t i) {
      std::copy_n(x.row(order[start + i]), nv, v0.row(i));
    });

    // Positive phase; h0 starts the chain for CD and gives the reconstruction error.
    gibbs_hidden<T>(v0, w, s.b_hidden, cfg.clip, rng(0), ph0, h0);
    Mat<T> hc = cfg.persistent ? s.chain.top(b) : h0;
    double sq = 0;
    auto add_error = [&](CMat<T> mean) {
      std::vector<double> row_sq(b);
      cpu::for_rows(b, nv, [&](index_t i) {
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
      Mat<T> vr(buf_vr.data(), b, nv);
      if (cfg.visible == Visible::Gaussian)
        affine<T>(h0, w, false, s.b_visible, vr);
      else
        affine_sigmoid<T>(h0, w, false, s.b_visible, cfg.clip, vr);
      add_error(vr);
    }

    // Negative phase: k alternating half-steps; hidden statistics use probabilities.
    for (int t = 0; t < cfg.k; ++t) {
      gibbs_visible<T>(hc, w, s.b_visible, cfg.visible, cfg.clip, rng(1 + 2 * t), vm, vs);
      if (t == 0 && !cfg.persistent) add_error(vm);
      affine_sigmoid<T>(vs, w, true, s.b_hidden, cfg.clip, phn);
      if (t + 1 < cfg.k || cfg.persistent) sample_bernoulli<T>(phn, rng(2 + 2 * t), hc);
    }
    stats.sum_squared_error += sq;

    // Update: velocity = momentum * velocity + lr * gradient; parameters += velocity.
    const T lr = cfg.learning_rate, mom = cfg.momentum, inv_b = T(1) / T(b);
    cpu::column_sums<T>(v0, inv_b, vbar.data());
    cpu::column_sums<T>(vs, inv_b, vneg.data());
    cpu::column_sums<T>(ph0, inv_b, qhat.data());
    cpu::column_sums<T>(phn, inv_b, hneg.data());
    cpu::for_rows(b, nh, [&](index_t i) {
      T* p = phn.row(i);
#pragma omp simd
      for (index_t j = 0; j < nh; ++j) p[j] = -p[j];
    });
    gemm<T>(true, false, lr * inv_b, Mat<T>(buf_ph.data(), 2 * b, nh),
            Mat<T>(buf_v.data(), 2 * b, nv), mom, s.v_w);
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
    const T decay = lr * cfg.weight_decay;
    cpu::for_rows(nh, nv, [&](index_t j) {
      T* vw = s.v_w.row(j);
      T* wj = s.w.row(j);
      const T pj = sp[j];
#pragma omp simd
      for (index_t i = 0; i < nv; ++i) {
        const T v = flush_denormal(vw[i] + pj * vbar[i] - decay * wj[i]);
        vw[i] = v;
        wj[i] += v;
      }
    });
    ++stats.n_batches;
  }
  return stats;
}

template EpochStats cd_epoch<float>(CMat<float>, const std::int64_t*, std::int64_t, std::int64_t,
                                    RBMState<float>, const CDConfig<float>&, std::uint64_t);
template EpochStats cd_epoch<double>(CMat<double>, const std::int64_t*, std::int64_t,
                                     std::int64_t, RBMState<double>, const CDConfig<double>&,
                                     std::uint64_t);

}  // namespace pymdbn
