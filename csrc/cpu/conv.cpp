// The data movement of convolutional pathways: im2col and its adjoint col2im, and
// non-overlapping pooling forward and backward, on channels-last (n, h * w * c) batches.
// Work is split over (image, row) pairs, each output element written by one thread in a
// fixed order, so results are the same for any thread count. No FTZ: sums and means
// keep denormals, as the NumPy twins do, and match them bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

template <class T>
void im2col(CMat<T> x, index_t h, index_t w, index_t c, index_t kh, index_t kw, Mat<T> cols) {
  const index_t ho = h - kh + 1, wo = w - kw + 1, run = kw * c, n = x.rows;
#pragma omp parallel for collapse(2) schedule(static) if (cols.rows * cols.cols >= kParallelWork)
  for (index_t i = 0; i < n; ++i) {
    for (index_t oy = 0; oy < ho; ++oy) {
      const T* img = x.row(i);
      for (index_t ox = 0; ox < wo; ++ox) {
        T* dst = cols.row((i * ho + oy) * wo + ox);
        // Channels-last: the kw pixels of one patch row are kw * c contiguous values.
        for (index_t dy = 0; dy < kh; ++dy)
          std::copy_n(img + ((oy + dy) * w + ox) * c, run, dst + dy * run);
      }
    }
  }
}

template <class T>
void col2im(CMat<T> cols, index_t h, index_t w, index_t c, index_t kh, index_t kw, Mat<T> x) {
  const index_t ho = h - kh + 1, wo = w - kw + 1, n = x.rows;
#pragma omp parallel for collapse(2) schedule(static) if (cols.rows * cols.cols >= kParallelWork)
  for (index_t i = 0; i < n; ++i) {
    for (index_t y = 0; y < h; ++y) {
      T* out = x.row(i) + y * w * c;
      std::fill_n(out, w * c, T(0));
      // Output row y gathers patch rows dy of output rows oy = y - dy. The loops over
      // (dy, dx) are outermost, so each pixel adds its copies in ascending (dy, dx), the
      // twin's order; the inner loop runs over the wo * c values of one (dy, dx).
      const index_t dy0 = std::max<index_t>(0, y - ho + 1), dy1 = std::min(kh - 1, y);
      for (index_t dy = dy0; dy <= dy1; ++dy) {
        const index_t row0 = (i * ho + (y - dy)) * wo;
        for (index_t dx = 0; dx < kw; ++dx) {
          const index_t col = (dy * kw + dx) * c;
          T* o = out + dx * c;
          if (c == 1) {
            const T* src = cols.row(row0) + col;
#pragma omp simd
            for (index_t ox = 0; ox < wo; ++ox) o[ox] += src[ox * cols.ld];
          } else {
            for (index_t ox = 0; ox < wo; ++ox) {
              const T* src = cols.row(row0 + ox) + col;
              T* d = o + ox * c;
#pragma omp simd
              for (index_t ch = 0; ch < c; ++ch) d[ch] += src[ch];
            }
          }
        }
      }
    }
  }
}

template <class T>
void pool_forward(CMat<T> x, index_t h, index_t w, index_t c, index_t size, Pooling mode,
                  Mat<T> y) {
  const index_t ho = h / size, wo = w / size, n = x.rows, wc = wo * c;
  const T area = T(size * size);
#pragma omp parallel for collapse(2) schedule(static) if (x.rows * x.cols >= kParallelWork)
  for (index_t i = 0; i < n; ++i) {
    for (index_t oy = 0; oy < ho; ++oy) {
      T* out = y.row(i) + oy * wc;
      const T* base = x.row(i) + oy * size * w * c;
      // Window element (dy, dx) of every window of this output row, in row-major order:
      // the first initialises, the others fold in; vectorised over the row's wo * c outputs.
      for (index_t dy = 0; dy < size; ++dy) {
        for (index_t dx = 0; dx < size; ++dx) {
          const T* src = base + (dy * w + dx) * c;
          for (index_t ox = 0; ox < wo; ++ox) {
            const T* s = src + ox * size * c;
            T* o = out + ox * c;
            if (dy == 0 && dx == 0) {
#pragma omp simd
              for (index_t ch = 0; ch < c; ++ch) o[ch] = s[ch];
            } else if (mode == Pooling::Max) {
              // '>' keeps the earlier element on ties, and a NaN only in first place.
#pragma omp simd
              for (index_t ch = 0; ch < c; ++ch) o[ch] = s[ch] > o[ch] ? s[ch] : o[ch];
            } else {
#pragma omp simd
              for (index_t ch = 0; ch < c; ++ch) o[ch] += s[ch];
            }
          }
        }
      }
      if (mode == Pooling::Avg) {
#pragma omp simd
        for (index_t j = 0; j < wc; ++j) out[j] /= area;
      }
    }
  }
}

template <class T>
void pool_backward(CMat<T> grad_y, CMat<T> x, index_t h, index_t w, index_t c, index_t size,
                   Pooling mode, Mat<T> grad_x) {
  const index_t ho = h / size, wo = w / size, n = x.rows, wc = wo * c;
  const index_t used = wo * size * c, tail = (w - wo * size) * c;
  const T area = T(size * size);
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
#pragma omp parallel if (x.rows * x.cols >= kParallelWork)
  {
    // Per output row: the running maximum and its window index k = dy * size + dx, per
    // (ox, ch). The index is kept as a T (exact: k < size^2 is small) so that the
    // compare-and-select loops below vectorise with one register width; an int64 index
    // beside a float maximum, and a division to decode it, made this pass 8x the forward.
    std::vector<T> best(mode == Pooling::Max ? wc : 0), arg(best.size());
#pragma omp for collapse(2) schedule(static)
    for (index_t i = 0; i < n; ++i) {
      for (index_t oy = 0; oy < ho; ++oy) {
        const T* g = grad_y.row(i) + oy * wc;
        const T* xb = x.row(i) + oy * size * w * c;
        T* gb = grad_x.row(i) + oy * size * w * c;
        // Every window element is written below; the dropped columns of this window row
        // and, below the last window row, the dropped rows are cleared here.
        if (tail)
          for (index_t dy = 0; dy < size; ++dy) std::fill_n(gb + dy * w * c + used, tail, T(0));
        if (oy + 1 == ho) std::fill_n(gb + size * w * c, (h - ho * size) * w * c, T(0));
        if (mode == Pooling::Avg) {
          for (index_t dy = 0; dy < size; ++dy)
            for (index_t dx = 0; dx < size; ++dx)
              for (index_t ox = 0; ox < wo; ++ox) {
                T* d = gb + (dy * w + ox * size + dx) * c;
                const T* s = g + ox * c;
#pragma omp simd
                for (index_t ch = 0; ch < c; ++ch) d[ch] = s[ch] / area;
              }
          continue;
        }
        // The argmax as pool_forward picks it: first maximal element, row-major.
        for (index_t dy = 0; dy < size; ++dy) {
          for (index_t dx = 0; dx < size; ++dx) {
            const T k = T(dy * size + dx);
            for (index_t ox = 0; ox < wo; ++ox) {
              const T* s = xb + (dy * w + ox * size + dx) * c;
              T* b = best.data() + ox * c;
              T* a = arg.data() + ox * c;
              if (dy == 0 && dx == 0) {
#pragma omp simd
                for (index_t ch = 0; ch < c; ++ch) {
                  b[ch] = s[ch];
                  a[ch] = T(0);
                }
              } else {
                // Branch-free (GCC made the two selects branches on one compare, which
                // random data mispredicts): the index moves by (k - a) * [s > b], exact
                // for these small integers, and the maximum is the forward's fold.
#pragma omp simd
                for (index_t ch = 0; ch < c; ++ch) {
                  const T better = T(s[ch] > b[ch]);
                  a[ch] += (k - a[ch]) * better;
                  b[ch] = s[ch] > b[ch] ? s[ch] : b[ch];
                }
              }
            }
          }
        }
        // Each window element takes its window's gradient where it is the argmax.
        for (index_t dy = 0; dy < size; ++dy)
          for (index_t dx = 0; dx < size; ++dx) {
            const T k = T(dy * size + dx);
            for (index_t ox = 0; ox < wo; ++ox) {
              T* d = gb + (dy * w + ox * size + dx) * c;
              const T* s = g + ox * c;
              const T* a = arg.data() + ox * c;
              // The gradient's bits under an all-ones / all-zero mask: exact for any
              // value (a product by 0 or 1 would turn -g into -0 and inf into NaN).
#pragma omp simd
              for (index_t ch = 0; ch < c; ++ch) {
                Bits bits;
                std::memcpy(&bits, s + ch, sizeof(T));
                bits &= Bits(0) - Bits(a[ch] == k);
                std::memcpy(d + ch, &bits, sizeof(T));
              }
            }
          }
      }
    }
  }
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_CONV)

}  // namespace pymdbn::cpu
