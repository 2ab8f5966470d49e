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

}  // namespace

template <class T>
void sample_bernoulli(CMat<T> p, CounterRNG rng, Mat<T> out) {
  for_rows(p.rows, p.cols, [&](index_t i) {
    const T* pi = p.row(i);
    T* o = out.row(i);
    row_words(rng, i, p.cols, [&](index_t j, std::uint32_t x) {
      o[j] = u01(x) < double(pi[j]) ? T(1) : T(0);
    });
  });
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
