// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, "Parallel random
// numbers: as easy as 1, 2, 3"). A draw depends only on (seed, stream, row, column), so
// results are identical whatever the number of threads or the order rows are visited.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "pymdbn/hd.h"
#include "pymdbn/numerics.h"

namespace pymdbn {

struct Philox4x32 {
  std::uint32_t v[4];
};

PYMDBN_HD inline Philox4x32 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = std::uint64_t(M0) * c0;
    const std::uint64_t p1 = std::uint64_t(M1) * c2;
    const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return {{c0, c1, c2, c3}};
}

// The generator for one sampling call: `stream` tells calls apart under one seed.
// Element (row, col) of a draw uses block (col / 4, row_offset + row, stream.lo,
// stream.hi), the row counter taken mod 2^32: word col % 4 for a Bernoulli draw; for a
// Gaussian draw words (0, 1) give columns 4b and 4b + 1 (cosine and sine of one
// Box-Muller pair), words (2, 3) the next two. pymdbn/_reference.py mirrors this.
// row_offset lets rows [r0, r1) of a batch be drawn elsewhere (on another process, with
// row_offset = r0) exactly as the whole batch draws them.
struct CounterRNG {
  std::uint64_t seed, stream, row_offset = 0;

  PYMDBN_HD Philox4x32 block(std::uint64_t b, std::uint64_t row) const {
    return philox4x32_10(std::uint32_t(b), std::uint32_t(row_offset + row), std::uint32_t(stream),
                         std::uint32_t(stream >> 32), std::uint32_t(seed),
                         std::uint32_t(seed >> 32));
  }
};

// Uniform in [0, 1) with 32 random bits; exact in double.
PYMDBN_HD inline double u01(std::uint32_t x) { return double(x) * 0x1p-32; }

// log(n 2^-32) for an integer n in [1, 2^32], in double, without the C library
// (numerics.h's log): within about an ulp of the true value (tests/test_libm_paths.py).
PYMDBN_HD inline double log_u32_scaled(std::uint64_t n) {
  double k;
  const double m = split_exponent(double(n), k);  // double(n) exact: n < 2^53
  return log_reduced(m - 1.0, k - 32.0);
}

// cos and sin of 2 pi b 2^-32 for a 32-bit b, in double, without the C library: the
// nearest quarter turn q = round(b / 2^30) split off in integers (exact), the rest x,
// |x| <= pi/4, by Taylor series (the first omitted terms below 2^-60 relative), then the
// quarter's exact swaps and sign changes.
PYMDBN_HD inline CosSin cos_sin_turns_u32(std::uint32_t b) {
  const std::uint64_t q = (std::uint64_t(b) + (1u << 29)) >> 30;  // 0..4
  const double x = double(std::int64_t(b) - std::int64_t(q << 30)) * 0x1.921fb54442d18p-30;
  return add_quarters(cos_sin_reduced(x), int(q & 3));
}

// Box-Muller on one pair of words, both outputs; |z| <= 6.66 since u1 is in [2^-32, 1].
// float: logf, sinf and cosf, much cheaper, their error below float's own resolution of
// the result; glibc's FMA and SSE2 builds of them agree on every float input here.
// double on the host: the functions above, whose plain IEEE operations give the same
// bits on every CPU and C library (glibc's log and sin/cos round differently in their
// FMA and SSE2 builds, in about 1 of 3000 draws). The device keeps its own functions.
template <class T>
PYMDBN_HD inline void box_muller(std::uint32_t a, std::uint32_t b, T& z0, T& z1) {
#ifndef __CUDA_ARCH__
  if constexpr (std::is_same<T, double>::value) {
    const double r = std::sqrt(-2.0 * log_u32_scaled(std::uint64_t(a) + 1));
    const CosSin t = cos_sin_turns_u32(b);
    z0 = r * t.cos;
    z1 = r * t.sin;
    return;
  }
#endif
  const T u1 = T((double(a) + 1.0) * 0x1p-32);
  const T u2 = T(double(b) * 0x1p-32);
  const T r = std::sqrt(T(-2) * std::log(u1)), t = T(6.283185307179586) * u2;
  z0 = r * std::cos(t);
  z1 = r * std::sin(t);
}

}  // namespace pymdbn
