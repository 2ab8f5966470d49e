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
PYMDBN_HD_INLINE float float_from_bits(std::int32_t bits) {
#ifdef __CUDA_ARCH__
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// The double whose bits are `bits`.
PYMDBN_HD_INLINE double float64_from_bits(std::uint64_t bits) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(bits));
#else
  double f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// exp for float without branches, so loops vectorise (Cephes expf, ~1 ulp on the
// range used here). Inputs are clamped to [-87, 88], where the result is normal.
// The clamps are std::max then std::min written out, so the result is unchanged.
PYMDBN_HD_INLINE float exp_approx(float x) {
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

// -- double exp, log and log1p without the C library ------------------------------------
// glibc's double exp, log, log1p and pow have FMA and SSE2 builds that round differently
// (in a C loop over 2e7 arguments each, every one of the four hashed differently under
// GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F), so float64 results computed with
// them would depend on the CPU. These use plain IEEE operations in a fixed order (the
// element-wise loops compile with fp-contract=off), so the host gets the same bits on every
// CPU and C library; they are within a few ulps of exact (tests/test_libm_paths.py). The
// device keeps its own functions.

// log(2^k (1 + f)) for f = m - 1, m in [sqrt(2)/2, sqrt(2)) (f exact): with s = f / (2 + f),
// log(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R)), R = sum_j 2 s^2j / (2j + 1) (Taylor:
// |s| < 0.172, so 10 terms leave a relative error below 1e-18); ln 2 split into a head
// with 21 zero low bits (k ln2_hi exact) and the rest.
PYMDBN_HD_INLINE double log_reduced(double f, double k) {
  const double s = f / (2.0 + f), z = s * s;
  double r = 2.0 / 21.0;
  r = r * z + 2.0 / 19.0;
  r = r * z + 2.0 / 17.0;
  r = r * z + 2.0 / 15.0;
  r = r * z + 2.0 / 13.0;
  r = r * z + 2.0 / 11.0;
  r = r * z + 2.0 / 9.0;
  r = r * z + 2.0 / 7.0;
  r = r * z + 2.0 / 5.0;
  r = r * z + 2.0 / 3.0;
  r = r * z;
  const double hfsq = 0.5 * f * f;
  constexpr double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
  return k * ln2_hi - ((hfsq - (s * (hfsq + r) + k * ln2_lo)) - f);
}

// The bits of a double (std::bit_cast is C++20).
PYMDBN_HD_INLINE std::uint64_t bits_of(double x) {
  std::uint64_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}

// Whether x's sign bit is set (-0 and negative NaNs included). std::signbit on a double
// kept GCC 12 from vectorising the loops around it; this does not.
PYMDBN_HD_INLINE bool sign_bit(double x) { return std::int64_t(bits_of(x)) < 0; }

// x = 2^k m, m in [sqrt(2)/2, sqrt(2)), for a positive finite x (denormals scaled by 2^54
// first, exactly). Selects, not branches, so loops over it vectorise; for other x, m and
// k are meaningless and the caller discards them.
PYMDBN_HD_INLINE double split_exponent(double x, double& k) {
  const bool denormal = (bits_of(x) >> 52) == 0;
  std::uint64_t bits = bits_of(denormal ? x * 0x1p54 : x);
  const int e = int(bits >> 52), bias = denormal ? 1023 + 54 : 1023;
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  const double m = float64_from_bits(bits);  // [1, 2)
  const bool halve = m >= 0x1.6a09e667f3bcdp+0;
  k = double(e - bias + (halve ? 1 : 0));
  return halve ? 0.5 * m : m;
}

// -inf at +-0, NaN below 0 and at NaN, +inf at +inf. Branch-free, like exp_ieee.
PYMDBN_HD_INLINE double log_ieee(double x) {
  double k;
  const double m = split_exponent(x, k);
  const double r = log_reduced(m - 1.0, k);
  return x > 0.0 ? (x == double(INFINITY) ? x : r) : (x == 0.0 ? -double(INFINITY) : double(NAN));
}

// log(1 + y) for y >= 0, accurate for small y: (1 + y) rounds to u, and
// log(u) y / (u - 1) corrects for that rounding (Goldberg 1991, theorem 4).
PYMDBN_HD_INLINE double log1p_ieee(double y) {
  const double u = 1.0 + y;
  return u == 1.0 ? y : log_ieee(u) * (y / (u - 1.0));
}

// exp(x): x = k ln2 + r, k = round(x / ln2) (by adding and subtracting 1.5 2^52), |r| <=
// 0.347, exp(r) by its Taylor series to r^13 (the next term below 2^-57 relative), then
// 2^k applied as two powers of two (exact unless the result is denormal).
// Branch-free (selects), so loops over it vectorise.
PYMDBN_HD_INLINE double exp_ieee(double x) {
  constexpr double hi = 709.782712893384, lo = -745.1332191019412;
  const double xc = x > hi ? hi : (x < lo ? lo : (x == x ? x : 0.0));
  constexpr double shift = 0x1.8p52, ln2_hi = 0x1.62e42fee00000p-1,
                   ln2_lo = 0x1.a39ef35793c76p-33;
  const double kd = (xc * 0x1.71547652b82fep0 + shift) - shift;
  const double r = (xc - kd * ln2_hi) - kd * ln2_lo;
  double q = 1.0 / 6227020800.0;  // 1/13!
  q = q * r + 1.0 / 479001600.0;
  q = q * r + 1.0 / 39916800.0;
  q = q * r + 1.0 / 3628800.0;
  q = q * r + 1.0 / 362880.0;
  q = q * r + 1.0 / 40320.0;
  q = q * r + 1.0 / 5040.0;
  q = q * r + 1.0 / 720.0;
  q = q * r + 1.0 / 120.0;
  q = q * r + 1.0 / 24.0;
  q = q * r + 1.0 / 6.0;
  q = q * r + 0.5;
  const double e = 1.0 + (r + (r * r) * q);
  const int k = int(kd), k1 = k / 2, k2 = k - k1;
  const double p1 = float64_from_bits(std::uint64_t(k1 + 1023) << 52),
               p2 = float64_from_bits(std::uint64_t(k2 + 1023) << 52);
  const double y = (e * p1) * p2;
  return x != x ? x : (x > hi ? double(INFINITY) : (x < lo ? 0.0 : y));
}

// b^t for an integer t >= 0 by repeated squaring (within about 2 log2(t) ulps).
PYMDBN_HD inline double pow_int(double b, std::int64_t t) {
  double r = 1.0;
  for (; t > 0; t >>= 1) {
    if (t & 1) r *= b;
    b *= b;
  }
  return r;
}

struct CosSin {
  double cos, sin;
};

// cos r and sin r for |r| <= pi/4 by their Taylor series (to r^17 and r^18: the first
// omitted terms are below 2^-60 relative).
PYMDBN_HD_INLINE CosSin cos_sin_reduced(double r) {
  const double z = r * r;
  double ps = 1.0 / 355687428096000.0;  // 1/17!
  ps = ps * z - 1.0 / 1307674368000.0;
  ps = ps * z + 1.0 / 6227020800.0;
  ps = ps * z - 1.0 / 39916800.0;
  ps = ps * z + 1.0 / 362880.0;
  ps = ps * z - 1.0 / 5040.0;
  ps = ps * z + 1.0 / 120.0;
  ps = ps * z - 1.0 / 6.0;
  double pc = -1.0 / 6402373705728000.0;  // -1/18!
  pc = pc * z + 1.0 / 20922789888000.0;
  pc = pc * z - 1.0 / 87178291200.0;
  pc = pc * z + 1.0 / 479001600.0;
  pc = pc * z - 1.0 / 3628800.0;
  pc = pc * z + 1.0 / 40320.0;
  pc = pc * z - 1.0 / 720.0;
  pc = pc * z + 1.0 / 24.0;
  return {1.0 - (0.5 * z - z * (z * pc)), r + r * (z * ps)};
}

// cos and sin of quarter pi/2 + r from those of r (quarter in 0-3): (c, s), (-s, c),
// (-c, -s), (s, -c); exact, and selects without branches.
PYMDBN_HD_INLINE CosSin add_quarters(CosSin v, int quarter) {
  const bool odd = (quarter & 1) != 0, neg_c = ((quarter + 1) & 2) != 0,
             neg_s = (quarter & 2) != 0;
  const double cv = odd ? v.sin : v.cos, sv = odd ? v.cos : v.sin;
  return {neg_c ? -cv : cv, neg_s ? -sv : sv};
}

// cos and sin of a: a = q pi/2 + r with q = rint(2a / pi) and pi/2 in three parts
// (accurate for |a| below about 10^5), then cos_sin_reduced and add_quarters. NaN for a
// non-finite a. pymdbn/data/_portable.py is the twin: the same operations in the same
// order.
PYMDBN_HD_INLINE CosSin cos_sin_ieee(double a) {
  constexpr double two_over_pi = 0x1.45f306dc9c883p-1, p1 = 0x1.921fb54400000p+0,
                   p2 = 0x1.0b4611a600000p-34, p3 = 0x1.3198a2e037073p-69, shift = 0x1.8p52;
  // q = rint(2a / pi) by adding and subtracting 1.5 2^52; q = 0 where that is not below
  // 2^30 in size (no accuracy is left there) or a is not finite, so int(q) is defined.
  const bool finite = a - a == 0.0;
  double q = (a * two_over_pi + shift) - shift;
  q = finite && std::fabs(q) < 0x1p30 ? q : 0.0;
  const CosSin v = add_quarters(cos_sin_reduced(((a - q * p1) - q * p2) - q * p3), int(q) & 3);
  return {finite ? v.cos : double(NAN), finite ? v.sin : double(NAN)};
}

// The angle of (x, y) in [-pi, pi] with the C library's signed-zero conventions: atan t
// for t = min / max of |x|, |y| in [0, 1], the angle halved twice (atan t = 2 atan(t /
// (1 + sqrt(1 + t^2)))) to t <= tan(pi/16), then 13 terms of the Taylor series; NaN if
// either is NaN. pymdbn/data/_portable.py is the twin.
PYMDBN_HD_INLINE double atan2_ieee(double y, double x) {
  const double ay = std::fabs(y), ax = std::fabs(x);
  const double big = ay > ax ? ay : ax, small = ay > ax ? ax : ay;
  double t = big > 0.0 ? small / big : 0.0;
  t = t / (1.0 + std::sqrt(1.0 + t * t));
  t = t / (1.0 + std::sqrt(1.0 + t * t));
  const double z = t * t;
  double p = 1.0 / 25.0;
  p = p * z - 1.0 / 23.0;
  p = p * z + 1.0 / 21.0;
  p = p * z - 1.0 / 19.0;
  p = p * z + 1.0 / 17.0;
  p = p * z - 1.0 / 15.0;
  p = p * z + 1.0 / 13.0;
  p = p * z - 1.0 / 11.0;
  p = p * z + 1.0 / 9.0;
  p = p * z - 1.0 / 7.0;
  p = p * z + 1.0 / 5.0;
  p = p * z - 1.0 / 3.0;
  double angle = 4.0 * (t + t * (z * p));
  constexpr double pi = 0x1.921fb54442d18p+1, pi_2 = 0x1.921fb54442d18p+0;
  angle = ay > ax ? pi_2 - angle : angle;
  angle = sign_bit(x) ? pi - angle : angle;
  return (x != x || y != y) ? double(NAN) : std::copysign(angle, y);
}

#ifdef __CUDA_ARCH__
PYMDBN_HD_INLINE double exp_approx(double x) { return std::exp(x); }
#else
PYMDBN_HD_INLINE double exp_approx(double x) { return exp_ieee(x); }
#endif

// Logistic sigmoid that returns exact 0 where the true value would be denormal.
template <class T>
PYMDBN_HD_INLINE T sigmoid(T x) {
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
PYMDBN_HD_INLINE T clipped_sigmoid(T x, T c) {
  x = x < -c ? -c : x;
  return sigmoid(c < x ? c : x);
}

// log(1 + exp(x)) without overflow.
template <class T>
PYMDBN_HD inline T softplus(T x) {
#ifndef __CUDA_ARCH__
  if constexpr (std::is_same<T, double>::value)
    return (x > 0.0 ? x : 0.0) + log1p_ieee(exp_ieee(-std::fabs(x)));
#endif
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
