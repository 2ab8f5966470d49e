#include <vector>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

// Unnormalised log-probability of v at inverse temperature beta, given the visible
// term dots and the hidden pre-activations of each chain:
// (1 - beta) a.v + beta b.v + sum_j softplus(beta * pre_j).
template <class T>
void ais_log_weights(CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, CVec<T> base_b_visible,
                     CVec<double> betas, std::uint64_t seed, Vec<double> log_weights) {
  const index_t m = log_weights.size, nv = w.cols, nh = w.rows, K = betas.size;
  std::vector<T> buf_v(m * nv), buf_p(m * nv), buf_h(m * nh), buf_ph(m * nh), buf_pre(m * nh);
  Mat<T> v(buf_v.data(), m, nv), p(buf_p.data(), m, nv), h(buf_h.data(), m, nh),
      ph(buf_ph.data(), m, nh), pre(buf_pre.data(), m, nh);
  std::vector<double> dot_base(m), dot_model(m);

  for_rows(m, nv + nh, [&](index_t i) {
    for (index_t j = 0; j < nv; ++j) p(i, j) = sigmoid(base_b_visible[j]);
  });
  sample_bernoulli<T>(p, CounterRNG{seed, 0}, v);
  for (index_t i = 0; i < m; ++i) log_weights[i] = 0;

  auto log_p = [&](index_t i, double beta) {
    double acc = (1 - beta) * dot_base[i] + beta * dot_model[i];
    for (index_t j = 0; j < nh; ++j) acc += double(softplus(T(beta * double(pre(i, j)))));
    return acc;
  };
  for (index_t k = 1; k < K; ++k) {
    const double beta = betas[k], prev = betas[k - 1];
    affine<T>(v, w, true, b_hidden, pre);
    for_rows(m, nv + nh, [&](index_t i) {
      double db = 0, dm = 0;
      for (index_t j = 0; j < nv; ++j) {
        db += double(v(i, j)) * double(base_b_visible[j]);
        dm += double(v(i, j)) * double(b_visible[j]);
      }
      dot_base[i] = db;
      dot_model[i] = dm;
      log_weights[i] += log_p(i, beta) - log_p(i, prev);
    });
    if (k + 1 == K) break;
    // Transition that leaves the distribution at beta invariant.
    const T bt = T(beta), bt1 = T(1 - beta);
    for_rows(m, nv + nh, [&](index_t i) {
      for (index_t j = 0; j < nh; ++j) ph(i, j) = sigmoid(bt * pre(i, j));
    });
    sample_bernoulli<T>(ph, CounterRNG{seed, std::uint64_t(2 * k - 1)}, h);
    affine<T>(h, w, false, b_visible, p);
    for_rows(m, nv + nh, [&](index_t i) {
      for (index_t j = 0; j < nv; ++j) p(i, j) = sigmoid(bt1 * base_b_visible[j] + bt * p(i, j));
    });
    sample_bernoulli<T>(p, CounterRNG{seed, std::uint64_t(2 * k)}, v);
  }
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_AIS)

}  // namespace pymdbn::cpu
