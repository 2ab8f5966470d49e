#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

namespace {

// Calls f(j, word) for the Bernoulli draw of each column j of one row.
template <class F>
inline void row_words(const CounterRNG& rng, index_t row, index_t cols, F&& f) {
  for (index_t j0 = 0; j0 < cols; j0 += 4) {
    const Philox4x32 r = rng.block(std::uint64_t(j0 / 4), std::uint64_t(row));
    const index_t n = std::min<index_t>(4, cols - j0);
    for (index_t t = 0; t < n; ++t) f(j0 + t, r.v[t]);
  }
}

// kLanes Philox blocks side by side (4 kLanes columns): the rounds vectorise across
// blocks (AVX-512: 16 lanes of 32 x 32 -> 64-bit products), where one block at a time
// runs the 10 rounds serially. Same counters, same words as row_words.
constexpr index_t kLanes = 16;

template <class T>
inline void bernoulli_row(const CounterRNG& rng, index_t row, const T* p, T* o, index_t cols) {
  const std::uint32_t c1 = std::uint32_t(rng.row_offset + std::uint64_t(row)),
                      c2 = std::uint32_t(rng.stream), c3 = std::uint32_t(rng.stream >> 32),
                      k0 = std::uint32_t(rng.seed), k1 = std::uint32_t(rng.seed >> 32);
  index_t j0 = 0;
  for (; j0 + 4 * kLanes <= cols; j0 += 4 * kLanes) {
    std::uint32_t w[4][kLanes];
#pragma omp simd
    for (index_t l = 0; l < kLanes; ++l) {
      const Philox4x32 r = philox4x32_10(std::uint32_t(j0 / 4 + l), c1, c2, c3, k0, k1);
      w[0][l] = r.v[0];
      w[1][l] = r.v[1];
      w[2][l] = r.v[2];
      w[3][l] = r.v[3];
    }
    for (index_t l = 0; l < kLanes; ++l)
      for (index_t t = 0; t < 4; ++t) {
        const index_t j = j0 + 4 * l + t;
        o[j] = u01(w[t][l]) < double(p[j]) ? T(1) : T(0);
      }
  }
  if (j0 < cols) {  // the last columns, a block at a time
    for (index_t jb = j0; jb < cols; jb += 4) {
      const Philox4x32 r = rng.block(std::uint64_t(jb / 4), std::uint64_t(row));
      const index_t n = std::min<index_t>(4, cols - jb);
      for (index_t t = 0; t < n; ++t) o[jb + t] = u01(r.v[t]) < double(p[jb + t]) ? T(1) : T(0);
    }
  }
}

}  // namespace

template <class T>
void sample_bernoulli(CMat<T> p, CounterRNG rng, Mat<T> out) {
  for_rows(p.rows, p.cols, [&](index_t i) { bernoulli_row(rng, i, p.row(i), out.row(i), p.cols); });
}

template <class T>
void sample_gaussian(CMat<T> mean, CounterRNG rng, Mat<T> out) {
  for_rows(mean.rows, 8 * mean.cols, [&](index_t i) {
    const T* m = mean.row(i);
    T* o = out.row(i);
    for (index_t j0 = 0; j0 < mean.cols; j0 += 4) {
      const Philox4x32 r = rng.block(std::uint64_t(j0 / 4), std::uint64_t(i));
      T z[4];
      box_muller(r.v[0], r.v[1], z[0], z[1]);
      box_muller(r.v[2], r.v[3], z[2], z[3]);
      const index_t n = std::min<index_t>(4, mean.cols - j0);
      for (index_t t = 0; t < n; ++t) o[j0 + t] = m[j0 + t] + z[t];
    }
  });
}

void random_bits(CounterRNG rng, Mat<std::uint32_t> out) {
  for_rows(out.rows, out.cols, [&](index_t i) {
    std::uint32_t* o = out.row(i);
    row_words(rng, i, out.cols, [&](index_t j, std::uint32_t x) { o[j] = x; });
  });
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_SAMPLERS)

}  // namespace pymdbn::cpu
