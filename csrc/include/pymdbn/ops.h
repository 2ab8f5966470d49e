// One declaration per op. Each op has a CPU implementation in csrc/cpu/<op>.cpp;
// a CUDA backend (csrc/cuda/, PYMDBN_CUDA) implements the same signatures.
// Shapes: batch-major; an RBM's weights W are (n_hidden, n_visible), as in
// scikit-learn's components_. All ops are templated on float and double.
#pragma once
#include <cstdint>

#include "pymdbn/rng.h"
#include "pymdbn/view.h"

namespace pymdbn {

enum class Visible : int { Bernoulli = 0, Gaussian = 1 };

// out = sigma(clip(x op(w) + b, -c, c)), op(w) = w^T when trans_w; clip <= 0: none.
template <class T>
void affine_sigmoid(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, T clip, Mat<T> out);

// out = x op(w) + b.
template <class T>
void affine(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out);

// out = 1[u < p] with u uniform from rng (see rng.h for the draw layout).
template <class T>
void sample_bernoulli(CMat<T> p, CounterRNG rng, Mat<T> out);

// out = mean + N(0, 1).
template <class T>
void sample_gaussian(CMat<T> mean, CounterRNG rng, Mat<T> out);

// The raw 32-bit words of a Bernoulli draw of shape (rows, cols), for testing twins.
void random_bits(CounterRNG rng, Mat<std::uint32_t> out);

// Half-step v -> h: prob = P(h=1|v), sample ~ prob.
template <class T>
void gibbs_hidden(CMat<T> v, CMat<T> w, CVec<T> b_hidden, T clip, CounterRNG rng,
                  Mat<T> prob, Mat<T> sample);

// Half-step h -> v: mean = E[v|h] (clipped sigmoid for Bernoulli units, linear for
// unit-variance Gaussian units), sample ~ P(v|h).
template <class T>
void gibbs_visible(CMat<T> h, CMat<T> w, CVec<T> b_visible, Visible visible, T clip,
                   CounterRNG rng, Mat<T> mean, Mat<T> sample);

template <class T>
struct CDConfig {
  int k = 1;
  bool persistent = false;
  Visible visible = Visible::Bernoulli;
  T clip = 0, learning_rate = 0, momentum = 0, weight_decay = 0;
  T sparsity_target = 0, sparsity_cost = 0;
  std::uint64_t seed = 0;
};

// Parameters, their velocities and (for PCD) the persistent hidden chain.
template <class T>
struct RBMState {
  Mat<T> w;                  // (n_hidden, n_visible)
  Vec<T> b_visible, b_hidden;
  Mat<T> v_w;                // velocity of w
  Vec<T> v_b_visible, v_b_hidden;
  Mat<T> chain;              // (>= batch_size, n_hidden), read and written when persistent
};

struct EpochStats {
  double sum_squared_error = 0;  // of v against E[v | h ~ P(h|v)], summed over entries
  std::int64_t n_batches = 0;
};

// One epoch of CD-k (or PCD-k) over the rows x[order[0..n)], in mini-batches of
// batch_size. Mini-batch s (0-based within the call) draws from streams
// (first_step + s) * 256 + j, j < 2k + 2.
template <class T>
EpochStats cd_epoch(CMat<T> x, const std::int64_t* order, std::int64_t n, std::int64_t batch_size,
                    RBMState<T> state, const CDConfig<T>& config, std::uint64_t first_step);

// Free energy per row: Bernoulli  F(v) = -v.b_v - sum_j softplus(v w_j + b_h,j);
// Gaussian (unit variance)  F(v) = |v - b_v|^2 / 2 - sum_j softplus(...).
template <class T>
void free_energy(CMat<T> v, CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, Visible visible,
                 Vec<T> out);

// Annealed importance sampling (Salakhutdinov & Murray 2008) for a Bernoulli RBM:
// log importance weights of n_runs chains annealed through betas (0 = base-rate model
// with visible biases base_b_visible, 1 = the RBM). Chains draw from streams 0.. 2K.
template <class T>
void ais_log_weights(CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, CVec<T> base_b_visible,
                     CVec<double> betas, std::uint64_t seed, Vec<double> log_weights);

// --- dense networks; weights (n_in, n_out) ------------------------------------------

enum class Activation : int { Sigmoid = 0, Linear = 1 };

// z = x w + b; a = sigma(clip(z)) (Sigmoid) or a copy of z (Linear).
template <class T>
void dense_forward(CMat<T> x, CMat<T> w, CVec<T> b, T clip, Activation act, Mat<T> z, Mat<T> a);

// Backpropagation through one layer. dz = grad_a * a (1 - a) * 1[|z| < clip] (Sigmoid) or
// grad_a (Linear); grad_w = x^T dz, grad_b = column sums of dz, grad_x = dz w^T (skipped
// when grad_x is empty). dz is workspace of grad_a's shape.
template <class T>
void dense_backward(CMat<T> grad_a, CMat<T> z, CMat<T> a, CMat<T> x, CMat<T> w, T clip,
                    Activation act, Mat<T> grad_x, Mat<T> grad_w, Vec<T> grad_b, Mat<T> dz);

// Weighted mean cross-entropy of softmax(logits) against labels y (weights may be null);
// writes softmax probabilities and the gradient of the loss w.r.t. the logits.
template <class T>
double softmax_cross_entropy(CMat<T> logits, const std::int64_t* y, const double* weight,
                             Mat<T> grad, Mat<T> proba);

// In place: v = momentum v - lr (g + wd p); p += v.
template <class T>
void sgd_momentum_update(Vec<T> param, CVec<T> grad, Vec<T> velocity, T lr, T momentum, T wd);

// In place Adam step t >= 1 with L2 decay added to the gradient.
template <class T>
void adam_update(Vec<T> param, CVec<T> grad, Vec<T> m, Vec<T> v, T lr, T beta1, T beta2, T eps,
                 std::int64_t t, T wd);

// --- preprocessing ----------------------------------------------------------------------

// out(i, j) = (T(x(i, j)) - mean[j]) / scale[j], or with mean[0], scale[0] for every j
// when per_feature is false; x is any of the element types the bindings accept.
// per_row first standardises each row by its own mean m_i and standard deviation s_i
// (population, computed in double; s_i = 1 where it is not finite or not above
// 1e-7 |m_i|, i.e. a constant row):
// out(i, j) = ((T(x(i, j)) - T(m_i)) / T(s_i) - mean[j]) / scale[j].
// Returns false when some output is not finite (NaN or infinite input, or overflow).
template <class S, class T>
bool standardize(const S* x, index_t rows, index_t cols, const T* mean, const T* scale,
                 bool per_feature, bool per_row, Mat<T> out);

// --- layer-wise relevance propagation through a dense layer ----------------------------

enum class LrpRule : int { Epsilon, ZPlus, AlphaBeta, Gamma, ZBox, Flat, WSquare };

template <class T>
struct LrpParams {
  LrpRule rule = LrpRule::Epsilon;
  T epsilon = T(1e-6), gamma = T(0.25), alpha = T(1), beta = T(0);
  bool use_bias = true;
  const T* low = nullptr;   // ZBox: per-input lower bounds (n_in)
  const T* high = nullptr;  // ZBox: per-input upper bounds (n_in)
};

// Relevance at the input of z = x w + b given relevance at its output (zennit's rule
// definitions; stabiliser z + eps sign(z), sign(0) = +1). z, when not empty, is the
// forward pre-activation and saves the epsilon rule its forward GEMM. totals, when not
// null, receives each row's sum and sum of absolute values of out ((rows, 2), row-major,
// accumulated in double, the same for any thread count), computed while out is in cache.
// out may be x itself (same data) for the epsilon rule only: the result then replaces x.
template <class T>
void lrp_dense(CMat<T> x, CMat<T> w, CVec<T> b, CMat<T> relevance, CMat<T> z,
               const LrpParams<T>& params, Mat<T> out, double* totals = nullptr);

}  // namespace pymdbn
