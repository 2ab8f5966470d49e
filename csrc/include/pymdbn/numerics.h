// Element-wise maths shared by the kernels of every backend (host and device code: no
// std:: call here that the device lacks; std::exp, log1p and fabs are device functions
// under nvcc's math headers).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "pymdbn/hd.h"

namespace pymdbn {

// The float whose bits are `bits` (std::bit_cast is C++20).
PYMDBN_HD inline float float_from_bits(std::int32_t bits) {
#ifdef __CUDA_ARCH__
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// exp for float without branches, so loops vectorise (Cephes expf, ~1 ulp on the
// range used here). Inputs are clamped to [-87, 88], where the result is normal.
// The clamps are std::max then std::min written out, so the result is unchanged.
PYMDBN_HD inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = 88.0f < x ? 88.0f : x;
  const float r = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round
  x = x - r * 0.693359375f;
  x = x + r * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * (x * x) + x + 1.0f;
  const int n = static_cast<int>(r);
  return y * float_from_bits((n + 127) << 23);
}
PYMDBN_HD inline double exp_approx(double x) { return std::exp(x); }

// Logistic sigmoid that returns exact 0 where the true value would be denormal.
template <class T>
PYMDBN_HD inline T sigmoid(T x) {
  constexpr T lo = std::is_same<T, float>::value ? T(-87.33) : T(-708.39);
  const T s = T(1) / (T(1) + exp_approx(-x));
  return x < lo ? T(0) : s;
}

// The clip bound the element-wise loops use: c <= 0 (no clipping) becomes +inf, so the
// loops stay branch-free and vectorise.
template <class T>
PYMDBN_HD inline T clip_bound(T c) {
  return c > T(0) ? c : T(INFINITY);
}

// sigma(clip(x, -c, c)) with c from clip_bound.
template <class T>
PYMDBN_HD inline T clipped_sigmoid(T x, T c) {
  x = x < -c ? -c : x;
  return sigmoid(c < x ? c : x);
}

// log(1 + exp(x)) without overflow.
template <class T>
PYMDBN_HD inline T softplus(T x) {
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

// The smallest normal number of each floating type.
PYMDBN_HD inline float smallest_normal(float) { return FLT_MIN; }
PYMDBN_HD inline double smallest_normal(double) { return DBL_MIN; }

template <class T>
PYMDBN_HD inline T flush_denormal(T x) {
  return std::fabs(x) < smallest_normal(x) ? T(0) : x;
}

}  // namespace pymdbn
