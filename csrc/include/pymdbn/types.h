// Types shared by every backend and the bindings: options, parameter sets, the dtypes.
#pragma once
#include <cstdint>

#include "pymdbn/view.h"

// The floating dtypes every op is compiled and bound for: X(T) once per type. A new
// dtype is one line here (plus its BLAS call in csrc/cpu/gemm.cpp).
#define PYMDBN_FOR_EACH_FLOAT(X) \
  X(float)                       \
  X(double)

// The element types standardize reads into each floating T (raw image data and the
// floating types): X(S, T) once per type. A macro cannot expand inside itself, so the
// floating types are spelled again here: a new floating dtype adds itself here too.
#define PYMDBN_FOR_EACH_SOURCE(X, T) \
  X(std::uint8_t, T)                 \
  X(std::uint16_t, T)                \
  X(std::int16_t, T)                 \
  X(float, T)                        \
  X(double, T)

namespace pymdbn {

enum class Visible : int { Bernoulli = 0, Gaussian = 1 };

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

enum class Activation : int { Sigmoid = 0, Linear = 1 };

// Non-overlapping pooling of convolutional pathways: the window's maximum or mean.
enum class Pooling : int { Max = 0, Avg = 1 };

enum class LrpRule : int { Epsilon, ZPlus, AlphaBeta, Gamma, ZBox, Flat, WSquare };

template <class T>
struct LrpParams {
  LrpRule rule = LrpRule::Epsilon;
  T epsilon = T(1e-6), gamma = T(0.25), alpha = T(1), beta = T(0);
  bool use_bias = true;
  const T* low = nullptr;   // ZBox: per-input lower bounds (n_in)
  const T* high = nullptr;  // ZBox: per-input upper bounds (n_in)
};

}  // namespace pymdbn
