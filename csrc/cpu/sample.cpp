#include <type_traits>

#include "common.h"
#ifdef PYMDBN_SIMD_VARIANTS
// GCC 12's AVX-512 shift intrinsics pass _mm512_undefined_epi32() (self-initialised) as
// the unused merge source: a false -Wmaybe-uninitialized where they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif
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

// kLanes Philox blocks side by side (4 kLanes words): the rounds vectorise across
// blocks (AVX-512: 16 lanes of 32 x 32 -> 64-bit products), where one block at a time
// runs the 10 rounds serially. The blocks are taken in row-major order over a range of
// rows, (row, block) = (r0, 0), (r0, 1), ..., (r0, nb - 1), (r0 + 1, 0), ..., so a
// group of kLanes blocks spans several rows when a row has fewer than 4 kLanes columns
// (a convolutional RBM's 32 filters). Each block has the counters row_words gives it,
// (block, row_offset + row, stream), hence the same words whatever the grouping.
constexpr index_t kLanes = 16;

// The words of kLanes Philox blocks, lane l with counters (c0[l], c1[l], c2, c3) and key
// (k0, k1), into words[4 l + t]: philox4x32_10 lane by lane (the compiler's own
// vectorisation for the baseline), or in AVX2 / AVX-512 registers (the 32 x 32 -> 64-bit
// products as even/odd VPMULUDQ pairs, which GCC does not find by itself; integer
// arithmetic: the same words).
enum class PhiloxIsa { generic, avx2, avx512 };

PYMDBN_ALWAYS_INLINE void philox_lanes(const std::uint32_t* c0, const std::uint32_t* c1,
                                       std::uint32_t c2, std::uint32_t c3, std::uint32_t k0,
                                       std::uint32_t k1, std::uint32_t* words) {
#pragma omp simd
  for (index_t l = 0; l < kLanes; ++l) {
    const Philox4x32 r = philox4x32_10(c0[l], c1[l], c2, c3, k0, k1);
    words[4 * l] = r.v[0];
    words[4 * l + 1] = r.v[1];
    words[4 * l + 2] = r.v[2];
    words[4 * l + 3] = r.v[3];
  }
}

#ifdef PYMDBN_SIMD_VARIANTS
// The words of 16 Philox blocks with counters (c0[l], c1[l], c2, c3), block-major: word t
// of lane l is element 4 l + t of the 64, returned as four vectors of 16.
struct Words16x4 {
  __m512i v[4];
};
PYMDBN_TARGET_AVX512 PYMDBN_ALWAYS_INLINE Words16x4 philox16_avx512(__m512i c0, __m512i c1,
                                                                   std::uint32_t c2s,
                                                                   std::uint32_t c3s,
                                                                   std::uint32_t k0s,
                                                                   std::uint32_t k1s) {
  const __m512i m0 = _mm512_set1_epi32(int(0xD2511F53u)), m1 = _mm512_set1_epi32(int(0xCD9E8D57u));
  __m512i c2 = _mm512_set1_epi32(int(c2s)), c3 = _mm512_set1_epi32(int(c3s));
  for (int r = 0; r < 10; ++r) {
    const __m512i k0 = _mm512_set1_epi32(int(k0s)), k1 = _mm512_set1_epi32(int(k1s));
    const __m512i e0 = _mm512_mul_epu32(c0, m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0);
    const __m512i e1 = _mm512_mul_epu32(c2, m1), o1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1);
    const __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, e0, _mm512_slli_epi64(o0, 32));
    const __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e0, 32), o0);
    const __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, e1, _mm512_slli_epi64(o1, 32));
    const __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e1, 32), o1);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), k0);
    c1 = lo1;
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), k1);
    c3 = lo0;
    k0s += 0x9E3779B9u;
    k1s += 0xBB67AE85u;
  }
  // 4 x 16 -> 16 x 4: u_k's 128-bit lane q is block 4 q + k.
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpacklo_epi32(c2, c3);
  const __m512i t2 = _mm512_unpackhi_epi32(c0, c1), t3 = _mm512_unpackhi_epi32(c2, c3);
  const __m512i u0 = _mm512_unpacklo_epi64(t0, t1), u1 = _mm512_unpackhi_epi64(t0, t1);
  const __m512i u2 = _mm512_unpacklo_epi64(t2, t3), u3 = _mm512_unpackhi_epi64(t2, t3);
  const __m512i a = _mm512_shuffle_i32x4(u0, u1, 0x44), b = _mm512_shuffle_i32x4(u2, u3, 0x44);
  const __m512i c = _mm512_shuffle_i32x4(u0, u1, 0xEE), d = _mm512_shuffle_i32x4(u2, u3, 0xEE);
  return {{_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD),
           _mm512_shuffle_i32x4(c, d, 0x88), _mm512_shuffle_i32x4(c, d, 0xDD)}};
}

PYMDBN_TARGET_AVX512 inline void philox_lanes_avx512(const std::uint32_t* c0p,
                                                     const std::uint32_t* c1p, std::uint32_t c2s,
                                                     std::uint32_t c3s, std::uint32_t k0s,
                                                     std::uint32_t k1s, std::uint32_t* words) {
  static_assert(kLanes == 16, "one zmm of counters");
  const Words16x4 w = philox16_avx512(_mm512_loadu_si512(c0p), _mm512_loadu_si512(c1p), c2s, c3s,
                                      k0s, k1s);
  for (int q = 0; q < 4; ++q) _mm512_storeu_si512(words + 16 * q, w.v[q]);
}

// Bernoulli draws (float) of `rows` rows of `cols` columns from row `row0` of the
// generator's rows on, p and o at their first element, consecutive rows `ld` apart.
// The counters of 16 consecutive blocks are made in registers (rows of ld == cols, a
// multiple of 4, are walked as one run of blocks; other rows one at a time), and
// u01(x) < p, exact in double, is compared in 32-bit integers: for 0 < p < 1, p 2^32 is
// a float (a power-of-two scaling) below 2^32, and the integer x is below it exactly when
// it is below its ceiling; p >= 1 always draws 1, p <= 0 and NaN never do (the double
// compare's answers; a denormal p, zero under DAZ in both, draws 0).
PYMDBN_TARGET_AVX512 void bernoulli_runs_avx512(const CounterRNG& rng, const float* p, float* o,
                                                index_t rows, index_t cols, index_t ld,
                                                index_t row0) {
  const std::uint32_t c2 = std::uint32_t(rng.stream), c3 = std::uint32_t(rng.stream >> 32),
                      k0 = std::uint32_t(rng.seed), k1 = std::uint32_t(rng.seed >> 32);
  const bool one_run = cols % 4 == 0 && ld == cols;
  const index_t runs = one_run ? 1 : rows, run_rows = one_run ? rows : 1;
  const index_t nb = (cols + 3) / 4;
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i nbv = _mm512_set1_epi32(int(nb)), onei = _mm512_set1_epi32(1);
  const __m512 scale = _mm512_set1_ps(0x1p32f), one = _mm512_set1_ps(1.0f),
               zero = _mm512_setzero_ps();
  for (index_t run = 0; run < runs; ++run) {
    const float* pp = p + run * ld;
    float* oo = o + run * ld;
    // Elements of this run: run_rows rows of cols, element e = word e of the run's blocks
    // (a run of several rows has no partial blocks).
    const index_t elems = run_rows * cols, blocks = run_rows * nb;
    index_t row = row0 + run, blk = 0;
    for (index_t g = 0; g < blocks; g += 16) {
      __m512i b = _mm512_add_epi32(_mm512_set1_epi32(int(blk)), iota);
      __m512i r = _mm512_set1_epi32(int(std::uint32_t(rng.row_offset + std::uint64_t(row))));
      for (__mmask16 wrap; (wrap = _mm512_cmpge_epu32_mask(b, nbv));) {
        b = _mm512_mask_sub_epi32(b, wrap, b, nbv);
        r = _mm512_mask_add_epi32(r, wrap, r, onei);
      }
      const Words16x4 w = philox16_avx512(b, r, c2, c3, k0, k1);
      for (int q = 0; q < 4; ++q) {
        const index_t e0 = 4 * g + 16 * q, left = elems - e0;
        if (left <= 0) break;
        const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
        const __m512 pv = _mm512_maskz_loadu_ps(m, pp + e0);
        const __m512i thr = _mm512_cvt_roundps_epu32(_mm512_mul_ps(pv, scale),
                                                     _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
        const __mmask16 hit =
            _mm512_cmp_ps_mask(pv, one, _CMP_GE_OQ) |
            (_mm512_cmp_ps_mask(pv, zero, _CMP_GT_OQ) & _mm512_cmplt_epu32_mask(w.v[q], thr));
        _mm512_mask_storeu_ps(oo + e0, m, _mm512_maskz_mov_ps(hit, one));
      }
      for (blk += 16; blk >= nb;) blk -= nb, ++row;
    }
  }
}

PYMDBN_TARGET_AVX2 inline void philox_lanes_avx2(const std::uint32_t* c0p, const std::uint32_t* c1p,
                                                 std::uint32_t c2s, std::uint32_t c3s,
                                                 std::uint32_t k0s0, std::uint32_t k1s0,
                                                 std::uint32_t* words) {
  const __m256i m0 = _mm256_set1_epi32(int(0xD2511F53u)), m1 = _mm256_set1_epi32(int(0xCD9E8D57u));
  for (int half = 0; half < 2; ++half) {
    __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c0p + 8 * half));
    __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c1p + 8 * half));
    __m256i c2 = _mm256_set1_epi32(int(c2s)), c3 = _mm256_set1_epi32(int(c3s));
    std::uint32_t k0s = k0s0, k1s = k1s0;
    for (int r = 0; r < 10; ++r) {
      const __m256i k0 = _mm256_set1_epi32(int(k0s)), k1 = _mm256_set1_epi32(int(k1s));
      const __m256i e0 = _mm256_mul_epu32(c0, m0), o0 = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
      const __m256i e1 = _mm256_mul_epu32(c2, m1), o1 = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
      const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0);
      c1 = lo1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1);
      c3 = lo0;
      k0s += 0x9E3779B9u;
      k1s += 0xBB67AE85u;
    }
    // 4 x 8 -> 8 x 4: u_k's 128-bit lane q is block 4 q + k of this half.
    const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpacklo_epi32(c2, c3);
    const __m256i t2 = _mm256_unpackhi_epi32(c0, c1), t3 = _mm256_unpackhi_epi32(c2, c3);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t1), u1 = _mm256_unpackhi_epi64(t0, t1);
    const __m256i u2 = _mm256_unpacklo_epi64(t2, t3), u3 = _mm256_unpackhi_epi64(t2, t3);
    __m256i* o = reinterpret_cast<__m256i*>(words + 32 * half);
    _mm256_storeu_si256(o, _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
  }
}
#endif

// Calls sink(n, row, blk, words) for each group of n <= kLanes consecutive blocks of
// rows [r0, r1) (nb blocks per row): lane l < n is block blk[l] of row row[l], its word
// t is words[4 l + t].
template <PhiloxIsa kIsa, class Sink>
PYMDBN_ALWAYS_INLINE void block_groups(const CounterRNG& rng, index_t r0, index_t r1, index_t nb,
                                       Sink&& sink) {
  if (nb == 0) return;
  const std::uint32_t c2 = std::uint32_t(rng.stream), c3 = std::uint32_t(rng.stream >> 32),
                      k0 = std::uint32_t(rng.seed), k1 = std::uint32_t(rng.seed >> 32);
  index_t row = r0, blk = 0;
  while (row < r1) {
    index_t n = 0, rows_l[kLanes], blks_l[kLanes];
    alignas(64) std::uint32_t c0[kLanes], c1[kLanes];
    for (; n < kLanes && row < r1; ++n) {
      rows_l[n] = row;
      blks_l[n] = blk;
      c0[n] = std::uint32_t(blk);
      c1[n] = std::uint32_t(rng.row_offset + std::uint64_t(row));
      if (++blk == nb) {
        blk = 0;
        ++row;
      }
    }
    for (index_t l = n; l < kLanes; ++l) c0[l] = c1[l] = 0;  // unused lanes
    alignas(64) std::uint32_t words[4 * kLanes];
#ifdef PYMDBN_SIMD_VARIANTS
    if constexpr (kIsa == PhiloxIsa::avx512)
      philox_lanes_avx512(c0, c1, c2, c3, k0, k1, words);
    else if constexpr (kIsa == PhiloxIsa::avx2)
      philox_lanes_avx2(c0, c1, c2, c3, k0, k1, words);
    else
#endif
      philox_lanes(c0, c1, c2, c3, k0, k1, words);
    sink(n, rows_l, blks_l, words);
  }
}

// Bernoulli draws of rows [r0, r1): o = u01(word) < p. A group whose blocks are full and
// lie end to end in memory (one row, or rows with no gap and a multiple of 4 columns)
// is compared in one contiguous loop; any other group element by element.
template <PhiloxIsa kIsa, class T>
PYMDBN_ALWAYS_INLINE void bernoulli_rows(const CounterRNG& rng, CMat<T> p, Mat<T> out,
                                         index_t r0, index_t r1) {
  const index_t cols = p.cols, nb = (cols + 3) / 4;
  const bool flat = cols % 4 == 0 && p.ld == cols && out.ld == cols;
  block_groups<kIsa>(rng, r0, r1, nb, [&](index_t n, const index_t* rows, const index_t* blks,
                                    const std::uint32_t* words) {
    const index_t last = n - 1;
    if (flat || (rows[0] == rows[last] && 4 * blks[last] + 4 <= cols)) {
      const T* pp = p.row(rows[0]) + 4 * blks[0];
      T* o = out.row(rows[0]) + 4 * blks[0];
      const index_t m = 4 * n;
#pragma omp simd
      for (index_t e = 0; e < m; ++e) o[e] = u01(words[e]) < double(pp[e]) ? T(1) : T(0);
      return;
    }
    for (index_t l = 0; l < n; ++l) {
      const index_t j0 = 4 * blks[l], m = std::min<index_t>(4, cols - j0);
      const T* pp = p.row(rows[l]) + j0;
      T* o = out.row(rows[l]) + j0;
      for (index_t t = 0; t < m; ++t) o[t] = u01(words[4 * l + t]) < double(pp[t]) ? T(1) : T(0);
    }
  });
}

// Gaussian draws of rows [r0, r1): Box-Muller on words (0, 1) and (2, 3) of each block.
template <PhiloxIsa kIsa, class T>
PYMDBN_ALWAYS_INLINE void gaussian_rows(const CounterRNG& rng, CMat<T> mean, Mat<T> out,
                                        index_t r0, index_t r1) {
  const index_t cols = mean.cols, nb = (cols + 3) / 4;
  block_groups<kIsa>(rng, r0, r1, nb, [&](index_t n, const index_t* rows, const index_t* blks,
                                    const std::uint32_t* words) {
    for (index_t l = 0; l < n; ++l) {
      const index_t j0 = 4 * blks[l], m = std::min<index_t>(4, cols - j0);
      const T* mm = mean.row(rows[l]) + j0;
      T* o = out.row(rows[l]) + j0;
      const std::uint32_t* w = words + 4 * l;
      T z[4];
      box_muller(w[0], w[1], z[0], z[1]);
      box_muller(w[2], w[3], z[2], z[3]);
      for (index_t t = 0; t < m; ++t) o[t] = mm[t] + z[t];
    }
  });
}

#ifdef PYMDBN_SIMD_VARIANTS
template <class T>
PYMDBN_TARGET_AVX2 void bernoulli_rows_avx2(const CounterRNG& rng, CMat<T> p, Mat<T> out,
                                            index_t r0, index_t r1) {
  bernoulli_rows<PhiloxIsa::avx2, T>(rng, p, out, r0, r1);
}
template <class T>
PYMDBN_TARGET_AVX512 void bernoulli_rows_avx512(const CounterRNG& rng, CMat<T> p, Mat<T> out,
                                                index_t r0, index_t r1) {
  // Runs of whole registers: a matrix of rows end to end in multiples of 4 columns, or
  // rows of at least 64 columns (one group of 16 blocks each); narrower rows with gaps
  // between them are grouped across rows by bernoulli_rows.
  if constexpr (std::is_same_v<T, float>) {
    if (p.ld == out.ld && ((p.cols % 4 == 0 && p.ld == p.cols) || p.cols >= 64))
      return bernoulli_runs_avx512(rng, p.row(r0), out.row(r0), r1 - r0, p.cols, p.ld, r0);
  }
  bernoulli_rows<PhiloxIsa::avx512, T>(rng, p, out, r0, r1);
}
template <class T>
PYMDBN_TARGET_AVX2 void gaussian_rows_avx2(const CounterRNG& rng, CMat<T> m, Mat<T> out,
                                           index_t r0, index_t r1) {
  gaussian_rows<PhiloxIsa::avx2, T>(rng, m, out, r0, r1);
}
template <class T>
PYMDBN_TARGET_AVX512 void gaussian_rows_avx512(const CounterRNG& rng, CMat<T> m, Mat<T> out,
                                               index_t r0, index_t r1) {
  gaussian_rows<PhiloxIsa::avx512, T>(rng, m, out, r0, r1);
}
#endif

}  // namespace

template <class T>
void sample_bernoulli(CMat<T> p, CounterRNG rng, Mat<T> out) {
  const Simd simd = simd_level();
  for_row_ranges(p.rows, p.cols, [&](index_t r0, index_t r1) {
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512) return bernoulli_rows_avx512<T>(rng, p, out, r0, r1);
    if (simd == Simd::avx2) return bernoulli_rows_avx2<T>(rng, p, out, r0, r1);
#endif
    (void)simd;
    bernoulli_rows<PhiloxIsa::generic, T>(rng, p, out, r0, r1);
  });
}

template <class T>
void sample_gaussian(CMat<T> mean, CounterRNG rng, Mat<T> out) {
  const Simd simd = simd_level();
  for_row_ranges(mean.rows, 8 * mean.cols, [&](index_t r0, index_t r1) {
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512) return gaussian_rows_avx512<T>(rng, mean, out, r0, r1);
    if (simd == Simd::avx2) return gaussian_rows_avx2<T>(rng, mean, out, r0, r1);
#endif
    (void)simd;
    gaussian_rows<PhiloxIsa::generic, T>(rng, mean, out, r0, r1);
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
