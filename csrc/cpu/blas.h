// GEMM on views through the scipy-openblas32 CBLAS (symbols scipy_cblas_*); internal
// to the CPU backend.
#pragma once
#include <functional>
#include <stdexcept>

#include "pymdbn/view.h"

namespace pymdbn::cpu {

// The operands' precision of float32 products. BFloat16: each operand is rounded to
// bfloat16 (to nearest, ties to even), the products are summed in float32 (oneDNN;
// onednn.h); float64 products are unaffected. Set per calling thread (the thread that
// calls an op; the op's OpenMP workers take it from there).
enum class Precision : int { Float32 = 0, BFloat16 = 1 };
// Throws std::invalid_argument for BFloat16 when oneDNN is not loaded.
void set_matmul_precision(Precision p);
Precision matmul_precision();

// While alive, the calling thread's bfloat16 products whose B operand is exactly x (same
// data, shape and stride, as stored) take this rounded copy instead of rounding x again:
// for weights that several products of a CD step share and nothing changes in between.
// A no-op for float64 or when the thread's precision is Float32.
class PinnedBf16 {
 public:
  explicit PinnedBf16(CMat<float> x);
  explicit PinnedBf16(CMat<double>) {}
  ~PinnedBf16();
  PinnedBf16(const PinnedBf16&) = delete;
  PinnedBf16& operator=(const PinnedBf16&) = delete;

 private:
  bool active_ = false;
};

// C = alpha * op(A) op(B) + beta * C, with op(X) = X or X^T; all row-major.
// C is computed as the tiles of gemm_tiles(m, n, k), one single-threaded BLAS call per
// tile over the whole of k; OpenMP threads share the tiles. OpenBLAS rounds a product
// differently for another shape, so fixing the tiles by the shape alone makes the
// result bit-identical whatever the number of threads.
template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c);

// C = alpha op(A) B, (m x n), computed in column chunks of `chunk` columns, each into a
// dense m x width scratch that consume(c0, scratch) reads on the same thread while it is
// in cache; chunks are shared by the OpenMP threads (scratch is the thread's own). The
// chunks depend on the arguments only, so the result does not depend on the thread
// count. consume runs with FTZ/DAZ set, the products without (as gemm's).
template <class T>
void gemm_column_chunks(bool trans_a, T alpha, CMat<T> a, CMat<T> b, index_t chunk,
                        const std::function<void(index_t, CMat<T>)>& consume);

// The tiles of an (m x n) product over k: a grid of rows x cols tiles of tm x tn
// elements (the last row and column of tiles may be smaller), numbered row-major.
struct GemmTiles {
  index_t m = 0, n = 0, tm = 0, tn = 0, rows = 0, cols = 0;
  Precision precision = Precision::Float32;  // the calling thread's, for gemm_tile
  index_t count() const { return rows * cols; }
  index_t row0(index_t t) const { return (t / cols) * tm; }
  index_t col0(index_t t) const { return (t % cols) * tn; }
  index_t height(index_t t) const { return row0(t) + tm < m ? tm : m - row0(t); }
  index_t width(index_t t) const { return col0(t) + tn < n ? tn : n - col0(t); }
};

// A function of the shape only, never of the thread count (and of the calling thread's
// precision).
GemmTiles gemm_tiles(index_t m, index_t n, index_t k);

// The rows per chunk of k in which gemm computes C = alpha A^T B + beta C (trans_a, not
// trans_b): k itself (one call per tile, as gemm_tiles says) except for outputs of one
// small tile over a long k, the weight gradients of convolutions, which gemm cuts along
// k into partial products summed in chunk order. A function of the shape only.
index_t gemm_k_chunk(index_t m, index_t n, index_t k, bool trans_a, bool trans_b);

// gemm(true, false, alpha, a, b, beta, c), the same bits, calling consume(t, k0, rows)
// once per chunk t of gemm_k_chunk's rows [k0, k0 + rows) of a and b, on the thread that
// multiplied that chunk, right after it (while the chunk is in cache; in the product's
// parallel region, so a sum over the same rows costs no region of its own). One call
// (0, 0, k) after the product when k is not split. consume runs without FTZ/DAZ.
template <class T>
void gemm_tn_k_chunks(T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c,
                      const std::function<void(index_t, index_t, index_t)>& consume);

// Tile t of gemm's C = alpha op(A) op(B) + beta C, single-threaded, written to dst
// (tiles.height(t) x tiles.width(t), holding C's tile when beta != 0; it may be C's
// own tile). Callers that consume C
// tile by tile (in place, while in cache) get exactly gemm's result.
template <class T>
void gemm_tile(const GemmTiles& tiles, index_t t, bool trans_a, bool trans_b, T alpha,
               CMat<T> a, CMat<T> b, T beta, Mat<T> dst);

}  // namespace pymdbn::cpu
