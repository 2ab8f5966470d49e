#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>
#include <stdexcept>
#include <type_traits>

#include "blas.h"
#include "ftz.h"
#include "onednn.h"
#include "pymdbn/ops.h"

// OpenBLAS runs single-threaded (set when the module loads) and the GEMMs are split
// across pymdbn's OpenMP threads instead: one thread pool, so OpenBLAS's spinning
// workers never compete with the OpenMP loops between GEMMs.
//
// OpenBLAS's result for an element depends on the shape of the call that computes it
// (kernel choice, edge kernels, small-matrix paths): (600x256)(256x128) in float32 as
// one call or as two row blocks differs in about 4000 of its 76800 elements with the
// Haswell kernels. So
// the tiles are a function of (m, n, k) only, and the same tiles are computed, by one
// call each, whether one thread or four run them.

namespace pymdbn::cpu {

namespace {

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

void call(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a,
          index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), blasint(m), blasint(n), blasint(k), alpha, a,
                    blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}
void call(bool ta, bool tb, index_t m, index_t n, index_t k, double alpha, const double* a,
          index_t lda, const double* b, index_t ldb, double beta, double* c, index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), blasint(m), blasint(n), blasint(k), alpha, a,
                    blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

// The tile sizes, measured with bench_rbm's CD-1 epochs on this repository's 2-core Xeon
// (float32, process time of one thread, so that the other cores' load counts less).
// Every tile packs its own panels of A (tm x k) and B (k x tn), so tiles cost time even
// on one thread: splitting the products of the (V, H, B) = (784, 512, 128) epoch into
// 2 / 4 / 6 tiles made it 5% / 5% / 10% slower than one call each, and the (4096, 1024,
// 256) epoch 1% / 8% / 8% (a packed element costs about 80 multiply-adds in the
// transposed weight-gradient product). Hence:
// - two tiles wherever each keeps at least kMinSide rows or columns: 2 threads (the CI
//   and the demo machine) then get equal shares at the cost of one more call;
// - more tiles (4, 6, 8 or 12, so 3 and 4 threads are put to work) only where each
//   split side keeps at least kMinSideMany columns or rows. At 1024 the 4096-pixel
//   epoch's visible and weight-gradient products were cut in 4, and on the idle machine
//   its np/pym ratio (bench_rbm, same run) fell from 1.03 / 1.15 (1 / 2 threads, the
//   old one-block-per-thread split) to 0.94 / 1.06; at 2048 they stay in 2 tiles:
//   0.98 / 1.07. Shapes with sides of 4096 and more still spread over 3 and 4 threads.
// Products below 2 kTileFlops multiply-adds stay one call, as before: waking a second
// thread costs more than it saves there.
constexpr double kTileFlops = 1e6;
constexpr index_t kMinSide = 256;
constexpr index_t kMinSideMany = 2048;
// Tile sides are multiples of 16: whole register blocks of OpenBLAS's kernels (4 to 16
// wide), so no tile but the last of a row or column runs the slower edge kernels.
constexpr index_t kAlign = 16;
constexpr index_t kMinRowsBf16 = 256;

// Weight-gradient products C = op(A)^T B whose output has a single tile (too small to
// split by rows or columns) but whose k, the rows of A and B, is long: a convolution's
// cols^T dz over every (image, position) row of a batch, (kh kw C) x F over 10^5 rows.
// Such a product is cut along k instead, into kSplitMaxChunks chunks (fewer, and even,
// where k is shorter) of at least kSplitMinRows rows, each a BLAS call into its own
// partial (chunk 0 into C itself), summed in chunk order afterwards. The chunks are a
// function of the shape only, so the result does not depend on the thread count.
// Dense mini-batches (tens to hundreds of rows) never reach 2 kSplitMinRows, so their
// products keep their single call and their bits. kSplitMinRows, measured with
// dense_backward's linear pass on one thread (the split's own cost; the 2-core Xeon, under
// the load of another job): for 25 x 32 and 288 x 64 outputs, chunks of >= 1024, 2048 or
// 4096 rows cost 0-5% (noise) from k = 16384 on; at k = 4096-8192, chunks of 2048 rows
// cost 10-18% and chunks of 4096 0-10%. With 2 threads a loaded machine's wake-ups (a 4 ms
// tick per parallel region) drowned the difference. 12 chunks split evenly over 2, 3, 4
// and 6 threads.
constexpr index_t kSplitMinRows = 4096;
constexpr index_t kSplitMaxChunks = 12;
// The partials are summed on the calling thread: the path is for small outputs only.
constexpr index_t kSplitMaxOutput = index_t(1) << 16;

index_t round_up(index_t x, index_t a) { return (x + a - 1) / a * a; }

// Side of p tiles over len, 0 when p non-empty tiles of at least min_side do not fit.
index_t side(index_t len, index_t p, index_t min_side) {
  if (p == 1) return len;
  const index_t s = round_up((len + p - 1) / p, kAlign);
  return s >= min_side && s * (p - 1) < len ? s : 0;
}

}  // namespace

namespace {
thread_local Precision precision_ = Precision::Float32;
}  // namespace

void set_matmul_precision(Precision p) {
  if (p == Precision::BFloat16 && !onednn::loaded())
    throw std::invalid_argument("bfloat16 products need oneDNN, which is not loaded");
  precision_ = p;
}
Precision matmul_precision() { return precision_; }

// The precision of a product with m rows: float32 for one row whatever the setting (a
// matrix-vector product in effect, bound by reading B, which rounding B would read once
// more; the NumPy twin's matmul makes the same exception).
static Precision precision_for(index_t m) { return m > 1 ? precision_ : Precision::Float32; }

GemmTiles gemm_tiles(index_t m, index_t n, index_t k) {
  GemmTiles g;
  g.precision = precision_for(m);
  g.m = m;
  g.n = n;
  g.tm = std::max<index_t>(m, 1);
  g.tn = std::max<index_t>(n, 1);
  const double work = double(m) * double(n) * double(k);
  if (g.precision == Precision::BFloat16) {
    // Row tiles only: oneDNN runs its AMX/AVX512_BF16 kernels (brgemm) on dense outputs
    // and falls back to slower ones for a strided tile of C (seen with ONEDNN_VERBOSE=1:
    // gemm:jit or ref:any instead of brg:avx512_core_amx). And few of them: each tile
    // reorders all of op(B) into the kernels' layout, so tiles of 32 rows made the
    // (4096, 1024, 256) epoch's products reorder W eight times each. Tiles of at least
    // kMinRowsBf16 rows (2 tiles from 64 rows on), in whole 16-row blocks. 256, not 128:
    // a batch of 1000 then takes 4 tiles, not 8, and bench_lrp.py --bfloat16 (N = 1000,
    // 2 threads) went from 38 to 28 ms forward and 66 to 53 ms explaining; 512 (2 tiles)
    // measured the same as 256 and would leave a third and fourth thread idle.
    for (index_t count : {12, 8, 6, 4, 2}) {
      if (work < double(count) * kTileFlops) continue;
      const index_t tm = side(m, count, kAlign);
      if (tm >= kMinRowsBf16 || (count == 2 && tm >= kAlign * 2)) {
        g.tm = tm;
        break;
      }
    }
    g.rows = (m + g.tm - 1) / g.tm;
    g.cols = 1;
    return g;
  }
  // Tile counts tried, most first: all even, so that 2 threads always get equal shares;
  // 12 also splits evenly over 3, 4 and 6 threads. One tile when none fits.
  for (index_t count : {12, 8, 6, 4, 2}) {
    if (work < double(count) * kTileFlops) continue;
    // Of the grids pr x pc = count, the one that packs the least: each tile packs its
    // tm x k and k x tn panels, k (m pc + n pr) in all.
    double best = -1;
    for (index_t pr = 1; pr <= count; ++pr) {
      if (count % pr) continue;
      const index_t pc = count / pr, ms = count == 2 ? kMinSide : kMinSideMany,
                    tm = side(m, pr, ms), tn = side(n, pc, ms);
      if (tm == 0 || tn == 0) continue;
      const double cost = double(m) * double(pc) + double(n) * double(pr);
      if (best < 0 || cost < best) best = cost, g.tm = tm, g.tn = tn;
    }
    if (best >= 0) break;
  }
  g.rows = (m + g.tm - 1) / g.tm;
  g.cols = (n + g.tn - 1) / g.tn;
  return g;
}

index_t gemm_k_chunk(index_t m, index_t n, index_t k, bool trans_a, bool trans_b) {
  if (!trans_a || trans_b || m * n > kSplitMaxOutput || k < 2 * kSplitMinRows) return k;
  // bfloat16 products are not split: in one CI run (CPU wheel) the chunked oneDNN product
  // at (115200, 25, 32) differed in the last bits between 1 and 2 threads
  // (tests/test_conv_speed_paths.py); the cause was not found, one call per product is
  // what the thread-count tests have always passed with.
  if (precision_for(m) == Precision::BFloat16) return k;
  if (gemm_tiles(m, n, k).count() != 1) return k;
  index_t count = std::min<index_t>(kSplitMaxChunks, k / kSplitMinRows);
  count -= count % 2;
  return round_up((k + count - 1) / count, kAlign);
}

namespace {

// bfloat16 bits of x, rounded to nearest even (NaN stays NaN).
// Denormal inputs become zeros of their sign, as AVX512_BF16's VCVTNEPS2BF16 (used
// below where the CPU has it) makes them.
inline std::uint16_t to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  const std::uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint16_t nan = std::uint16_t((u >> 16) | 0x40u), zero = std::uint16_t((u >> 16) & 0x8000u);
  return (u & 0x7fffffffu) > 0x7f800000u ? nan
         : (u & 0x7f800000u) == 0        ? zero
                                         : std::uint16_t(r);
}

// n floats to bfloat16: VCVTNEPS2BF16, 16 at a time, where the CPU has AVX512_BF16 (as
// every CPU oneDNN's bfloat16 path runs on does), else to_bf16; the same bits either way.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void row_bf16_avx512(
    const float* x, std::uint16_t* o, index_t n) {
  index_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + j)));
  for (; j < n; ++j) o[j] = to_bf16(x[j]);
}
const bool has_avx512_bf16 = __builtin_cpu_supports("avx512bf16");
#else
void row_bf16_avx512(const float*, std::uint16_t*, index_t) {}
const bool has_avx512_bf16 = false;
#endif

inline void row_bf16(const float* x, std::uint16_t* o, index_t n) {
  if (has_avx512_bf16) {
    row_bf16_avx512(x, o, n);
    return;
  }
#pragma omp simd
  for (index_t j = 0; j < n; ++j) o[j] = to_bf16(x[j]);
}

// Rows [r0, r0 + rows) of op(X) (X if !trans, else X^T; k = its width) as bfloat16,
// dense row-major (ld = k), into buf (kept by the caller: a fresh allocation per product
// costs its page faults every time). Integer arithmetic only: FTZ/DAZ do not matter.
const std::uint16_t* op_rows_bf16(CMat<float> x, bool trans, index_t r0, index_t rows,
                                  bool parallel, std::vector<std::uint16_t>& buf) {
  const index_t k = trans ? x.rows : x.cols;
  if (buf.size() < std::size_t(rows * k)) buf.resize(std::size_t(rows * k));
  std::uint16_t* o = buf.data();
  const bool par = parallel && rows > 1 && rows * k >= (1 << 15);
  if (!trans) {
#pragma omp parallel for schedule(static) if (par)
    for (index_t i = 0; i < rows; ++i) row_bf16(x.row(r0 + i), o + i * k, k);
    return o;
  }
  // op(X) = X^T: kBlock columns of X at a time, each of X's rows converted as a short
  // contiguous run (row_bf16) into a k x kBlock panel, then the panel transposed into
  // kBlock output rows. Element by element down the columns (one cache line per
  // element) this took 13% of a bfloat16 cd_apply at (4096, 1024, 256).
  constexpr index_t kBlock = 32;
  const index_t blocks = (rows + kBlock - 1) / kBlock;
#pragma omp parallel if (par && blocks > 1)
  {
    thread_local std::vector<std::uint16_t> panel;
    if (panel.size() < std::size_t(k * kBlock)) panel.resize(std::size_t(k * kBlock));
#pragma omp for schedule(static)
    for (index_t blk = 0; blk < blocks; ++blk) {
      const index_t i0 = blk * kBlock, w = std::min(kBlock, rows - i0);
      for (index_t j = 0; j < k; ++j) row_bf16(&x(j, r0 + i0), panel.data() + j * kBlock, w);
      for (index_t i = 0; i < w; ++i) {
        std::uint16_t* oi = o + (i0 + i) * k;
        const std::uint16_t* pi = panel.data() + i;
        for (index_t j = 0; j < k; ++j) oi[j] = pi[j * kBlock];
      }
    }
  }
  return o;
}

// The operands pinned by PinnedBf16 on this thread (a CD step pins one: the weights).
struct Pinned {
  const float* data;
  index_t rows, cols, ld;
  std::vector<std::uint16_t> bits;
};
thread_local std::vector<Pinned> pinned;

// x as stored, rounded: the pinned copy when x is pinned, else converted into buf.
const std::uint16_t* stored_bf16(CMat<float> x, std::vector<std::uint16_t>& buf) {
  for (const Pinned& p : pinned)
    if (p.data == x.data && p.rows == x.rows && p.cols == x.cols && p.ld == x.ld)
      return p.bits.data();
  return op_rows_bf16(x, false, 0, x.rows, true, buf);
}

// One row tile of a bfloat16 product: a holds op(A)'s rows from a_r0 on (dense, k wide),
// b all of B as stored (tb: B is op(B) transposed; ldb = its width).
void tile_bf16(const GemmTiles& g, index_t t, const std::uint16_t* a, index_t a_r0, bool tb,
               const std::uint16_t* b, index_t ldb, index_t k, float alpha, float beta,
               Mat<float> dst) {
  const index_t c0 = g.col0(t);
  onednn::gemm(false, tb, g.height(t), g.width(t), k, alpha, a + (g.row0(t) - a_r0) * k, k,
               tb ? b + c0 * ldb : b + c0, ldb, beta, dst.data, dst.ld);
}

template <class T>
void tile_impl(const GemmTiles& g, index_t t, bool ta, bool tb, T alpha, CMat<T> a, CMat<T> b,
               T beta, Mat<T> dst) {
  const index_t r0 = g.row0(t), c0 = g.col0(t), k = ta ? a.rows : a.cols;
  const T* ap = ta ? a.data + r0 : a.data + r0 * a.ld;  // rows r0.. of op(A)
  const T* bp = tb ? b.data + c0 * b.ld : b.data + c0;  // columns c0.. of op(B)
  call(ta, tb, g.height(t), g.width(t), k, alpha, ap, a.ld, bp, b.ld, beta, dst.data, dst.ld);
}

// C = alpha A^T B + beta C in chunks of kc rows of A and B (see gemm_k_chunk): chunk 0
// into C (with beta), chunk t > 0 into partial t, then C += partial 1, 2, ... in turn.
template <class T>
void gemm_split_k(index_t kc, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c,
                  const std::function<void(index_t, index_t, index_t)>* consume) {
  const index_t m = c.rows, n = c.cols, k = a.rows, count = (k + kc - 1) / kc;
  thread_local std::vector<T> partials;
  if (partials.size() < std::size_t((count - 1) * m * n))
    partials.resize(std::size_t((count - 1) * m * n));
  T* const part = partials.data();
  auto dst = [&](index_t t) {
    return t == 0 ? c : Mat<T>(part + (t - 1) * m * n, m, n, n);
  };
  std::function<void(index_t)> chunk = [&](index_t t) {
    const index_t k0 = t * kc, rows = std::min(kc, k - k0);
    Mat<T> d = dst(t);
    call(true, false, m, n, rows, alpha, a.data + k0 * a.ld, a.ld, b.data + k0 * b.ld, b.ld,
         t == 0 ? beta : T(0), d.data, d.ld);
  };
  if constexpr (std::is_same_v<T, float>) {
    if (precision_for(m) == Precision::BFloat16) {
      // op(A) = A^T rounded once (m x k, dense), B as stored (k x n, dense): a chunk is
      // columns [k0, k0 + rows) of the one and rows [k0, k0 + rows) of the other.
      thread_local std::vector<std::uint16_t> abuf, bbuf;
      const std::uint16_t* a16 = op_rows_bf16(a, true, 0, m, true, abuf);
      const std::uint16_t* b16 = stored_bf16(b, bbuf);
      chunk = [&, a16, b16](index_t t) {
        const index_t k0 = t * kc, rows = std::min(kc, k - k0);
        Mat<T> d = dst(t);
        onednn::gemm(false, false, m, n, rows, alpha, a16 + k0, k, b16 + k0 * n, n,
                     t == 0 ? beta : 0.0f, d.data, d.ld);
      };
    }
  }
  auto run = [&](index_t t) {
    chunk(t);
    if (consume) (*consume)(t, t * kc, std::min(kc, k - t * kc));
  };
  const int nt = omp_in_parallel() ? 1 : int(std::min<index_t>(omp_get_max_threads(), count));
  if (nt <= 1) {
    for (index_t t = 0; t < count; ++t) run(t);
  } else {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (index_t t = 0; t < count; ++t) run(t);
  }
  for (index_t t = 1; t < count; ++t) {
    const T* p = part + (t - 1) * m * n;
    for (index_t i = 0; i < m; ++i) {
      T* ci = c.row(i);
      const T* pi = p + i * n;
#pragma omp simd
      for (index_t j = 0; j < n; ++j) ci[j] += pi[j];
    }
  }
}

template <class T>
void gemm_impl(bool ta, bool tb, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c) {
  const index_t m = c.rows, n = c.cols, k = ta ? a.rows : a.cols;
  if (c.empty()) return;
  if (k == 0) {  // BLAS leaves C untouched for k = 0; the product is zero.
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) c(i, j) = beta == T(0) ? T(0) : beta * c(i, j);
    return;
  }
  if (const index_t kc = gemm_k_chunk(m, n, k, ta, tb); kc < k) {
    gemm_split_k<T>(kc, alpha, a, b, beta, c, nullptr);
    return;
  }
  const GemmTiles g = gemm_tiles(m, n, k);
  const index_t count = g.count();
  auto dst = [&](index_t t) {
    return Mat<T>(c.data + g.row0(t) * c.ld + g.col0(t), g.height(t), g.width(t), c.ld);
  };
  std::function<void(index_t)> tile = [&](index_t t) {
    tile_impl<T>(g, t, ta, tb, alpha, a, b, beta, dst(t));
  };
  // bfloat16: both operands rounded once, then the same tiles from the rounded copies.
  if constexpr (std::is_same_v<T, float>) {
    if (g.precision == Precision::BFloat16) {
      thread_local std::vector<std::uint16_t> abuf, bbuf;
      const std::uint16_t* a16 = op_rows_bf16(a, ta, 0, m, true, abuf);
      const std::uint16_t* b16 = stored_bf16(b, bbuf);
      tile = [&, a16, b16](index_t t) {
        tile_bf16(g, t, a16, 0, tb, b16, b.cols, k, alpha, beta, dst(t));
      };
    }
  }
  const int nt = omp_in_parallel() ? 1 : int(std::min<index_t>(omp_get_max_threads(), count));
  if (nt <= 1) {
    for (index_t t = 0; t < count; ++t) tile(t);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(nt)
  for (index_t t = 0; t < count; ++t) tile(t);
}

}  // namespace

PinnedBf16::PinnedBf16(CMat<float> x) {
  if (precision_ != Precision::BFloat16) return;
  std::vector<std::uint16_t> bits;
  op_rows_bf16(x, false, 0, x.rows, true, bits);
  pinned.push_back(Pinned{x.data, x.rows, x.cols, x.ld, std::move(bits)});
  active_ = true;
}

PinnedBf16::~PinnedBf16() {
  if (active_) pinned.pop_back();
}

template <class T>
void gemm(bool ta, bool tb, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c) {
  gemm_impl<T>(ta, tb, alpha, a, b, beta, c);
}

template <class T>
void gemm_tile(const GemmTiles& g, index_t t, bool ta, bool tb, T alpha, CMat<T> a, CMat<T> b,
               T beta, Mat<T> dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (g.precision == Precision::BFloat16) {
      // Only this tile's panels, rounded as gemm rounds them: the same bits.
      const index_t k = ta ? a.rows : a.cols;
      thread_local std::vector<std::uint16_t> abuf, bbuf;
      const std::uint16_t* a16 = op_rows_bf16(a, ta, g.row0(t), g.height(t), false, abuf);
      const std::uint16_t* b16 = op_rows_bf16(b, false, 0, b.rows, false, bbuf);
      tile_bf16(g, t, a16, g.row0(t), tb, b16, b.cols, k, alpha, beta, dst);
      return;
    }
  }
  tile_impl<T>(g, t, ta, tb, alpha, a, b, beta, dst);
}

template <class T>
void gemm_tn_k_chunks(T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c,
                      const std::function<void(index_t, index_t, index_t)>& consume) {
  const index_t m = c.rows, n = c.cols, k = a.rows;
  const index_t kc = gemm_k_chunk(m, n, k, true, false);
  if (c.empty() || kc >= k) {
    gemm<T>(true, false, alpha, a, b, beta, c);
    if (k > 0) consume(0, 0, k);
    return;
  }
  gemm_split_k<T>(kc, alpha, a, b, beta, c, &consume);
}

template <class T>
void gemm_column_chunks(bool ta, T alpha, CMat<T> a, CMat<T> b, index_t chunk,
                        const std::function<void(index_t, CMat<T>)>& consume) {
  const index_t m = ta ? a.cols : a.rows, k = b.rows, n = b.cols;
  if (m == 0 || n == 0) return;
  // An even number of chunks of equal width (16-column multiples), near `chunk` wide:
  // 2 threads then get equal shares (784 columns in 512 + 272 made one thread wait).
  index_t count = (n + std::max<index_t>(chunk, 1) - 1) / std::max<index_t>(chunk, 1);
  if (count > 1) count += count % 2;
  chunk = std::max<index_t>(1, std::min(n, round_up((n + count - 1) / count, kAlign)));
  count = (n + chunk - 1) / chunk;
  bool bf16 = false;
  if constexpr (std::is_same_v<T, float>) bf16 = precision_for(m) == Precision::BFloat16 && k > 0;
  // bfloat16: op(A), which every chunk multiplies, rounded once on this thread.
  std::vector<std::uint16_t> a16;
  if constexpr (std::is_same_v<T, float>)
    if (bf16) op_rows_bf16(a, ta, 0, m, true, a16);
  const int nt = omp_in_parallel() || double(m) * double(n) * double(k) < 2 * kTileFlops
                     ? 1
                     : int(std::min<index_t>(omp_get_max_threads(), count));
#pragma omp parallel num_threads(nt)
  {
    // Kept per thread: a fresh (zero-filled) 1 MB scratch per step cost its page faults.
    thread_local std::vector<T> scratch;
    thread_local std::vector<std::uint16_t> b16;
    if (scratch.size() < std::size_t(m * chunk)) scratch.resize(std::size_t(m * chunk));
#pragma omp for schedule(static)
    for (index_t t = 0; t < count; ++t) {
      const index_t c0 = t * chunk, w = std::min(chunk, n - c0);
      Mat<T> sc(scratch.data(), m, w);
      if (k == 0) {
        std::fill_n(scratch.begin(), m * w, T(0));
      } else if constexpr (std::is_same_v<T, float>) {
        if (bf16) {
          // B's columns [c0, c0 + w), rounded, dense (k x w).
          op_rows_bf16(CMat<float>(b.data + c0, k, w, b.ld), false, 0, k, false, b16);
          onednn::gemm(false, false, m, w, k, alpha, a16.data(), k, b16.data(), w, 0.0f,
                       sc.data, w);
        } else {
          call(ta, false, m, w, k, alpha, a.data, a.ld, b.data + c0, b.ld, T(0), sc.data, w);
        }
      } else {
        call(ta, false, m, w, k, alpha, a.data, a.ld, b.data + c0, b.ld, T(0), sc.data, w);
      }
      ScopedFTZ ftz;
      consume(c0, CMat<T>(sc.data, m, w, w));
    }
  }
}

// Each type needs its BLAS `call` overload above.
#define PYMDBN_INSTANTIATE(T)                                                                   \
  template void gemm<T>(bool, bool, T, CMat<T>, CMat<T>, T, Mat<T>);                            \
  template void gemm_tile<T>(const GemmTiles&, index_t, bool, bool, T, CMat<T>, CMat<T>, T, Mat<T>); \
  template void gemm_column_chunks<T>(bool, T, CMat<T>, CMat<T>, index_t,                       \
                                      const std::function<void(index_t, CMat<T>)>&);        \
  template void gemm_tn_k_chunks<T>(T, CMat<T>, CMat<T>, T, Mat<T>,                            \
                                    const std::function<void(index_t, index_t, index_t)>&);
PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE)
#undef PYMDBN_INSTANTIATE

void blas_single_threaded() { scipy_openblas_set_num_threads(1); }

int blas_num_threads() { return scipy_openblas_get_num_threads(); }
const char* blas_config() { return scipy_openblas_get_config(); }

}  // namespace pymdbn::cpu
