// The data movement of convolutional pathways on the GPU (csrc/cpu/conv.cpp): one thread
// per output element, each reading its inputs in the CPU's order, so col2im (a gather:
// no atomics) and pooling are deterministic and bit-identical to the CPU and the NumPy
// twins. Sums and means use common.cuh's *_rn forms: the build's -ftz=true would flush
// the denormals that the CPU and the twins keep.
#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// cols(r, k): r = (i * ho + oy) * wo + ox, k = (dy * kw + dx) * c + ch; consecutive
// threads write consecutive entries of a row of cols.
template <class T>
__global__ void im2col_kernel(CMat<T> x, index_t w, index_t c, index_t kw, index_t ho,
                              index_t wo, Mat<T> cols) {
  const index_t n = cols.rows * cols.cols;
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t r = e / cols.cols, k = e - r * cols.cols;
    const index_t i = r / (ho * wo), p = r - i * ho * wo, oy = p / wo, ox = p - oy * wo;
    const index_t d = k / c, ch = k - d * c, dy = d / kw, dx = d - dy * kw;
    cols(r, k) = x(i, ((oy + dy) * w + ox + dx) * c + ch);
  }
}

// x(i, (y * w + px) * c + ch): the sum over (dy, dx), ascending, of the patch entries
// that copied the pixel, starting from 0 as the twin does.
template <class T>
__global__ void col2im_kernel(CMat<T> cols, index_t w, index_t c, index_t kh, index_t kw,
                              index_t ho, index_t wo, Mat<T> x) {
  const index_t n = x.rows * x.cols;
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / x.cols, j = e - i * x.cols;
    const index_t pix = j / c, ch = j - pix * c, y = pix / w, px = pix - y * w;
    T sum = T(0);
    for (index_t dy = 0; dy < kh; ++dy) {
      const index_t oy = y - dy;
      if (oy < 0 || oy >= ho) continue;
      for (index_t dx = 0; dx < kw; ++dx) {
        const index_t ox = px - dx;
        if (ox < 0 || ox >= wo) continue;
        sum = add_rn(sum, cols((i * ho + oy) * wo + ox, (dy * kw + dx) * c + ch));
      }
    }
    x(i, j) = sum;
  }
}

// The window's first element folded with the others in row-major order: '>' for max
// (ties and a NaN after the first keep the earlier value), a sum for avg.
template <class T>
__device__ T pool_window(const T* base, index_t w, index_t c, index_t size, Pooling mode,
                         index_t* arg) {
  T acc = base[0];
  index_t best = 0;
  for (index_t dy = 0; dy < size; ++dy)
    for (index_t dx = 0; dx < size; ++dx) {
      if (dy == 0 && dx == 0) continue;
      const T v = base[(dy * w + dx) * c];
      if (mode == Pooling::Avg) {
        acc = add_rn(acc, v);
      } else if (v > acc) {
        acc = v;
        best = dy * size + dx;
      }
    }
  if (arg) *arg = best;
  return acc;
}

template <class T>
__global__ void pool_forward_kernel(CMat<T> x, index_t w, index_t c, index_t size, Pooling mode,
                                    index_t wo, Mat<T> y) {
  const index_t n = y.rows * y.cols;
  const T area = T(size * size);
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / y.cols, j = e - i * y.cols;
    const index_t o = j / c, ch = j - o * c, oy = o / wo, ox = o - oy * wo;
    const T* base = x.row(i) + ((oy * size) * w + ox * size) * c + ch;
    const T acc = pool_window(base, w, c, size, mode, static_cast<index_t*>(nullptr));
    y(i, j) = mode == Pooling::Avg ? div_rn(acc, area) : acc;
  }
}

// One thread per input element: its window's gradient if it is the window's argmax
// (recomputed) or for avg, 0 in the dropped border and elsewhere.
template <class T>
__global__ void pool_backward_kernel(CMat<T> grad_y, CMat<T> x, index_t w, index_t c,
                                     index_t size, Pooling mode, index_t ho, index_t wo,
                                     Mat<T> grad_x) {
  const index_t n = grad_x.rows * grad_x.cols;
  const T area = T(size * size);
  PYMDBN_GRID_STRIDE(e, n) {
    const index_t i = e / grad_x.cols, j = e - i * grad_x.cols;
    const index_t pix = j / c, ch = j - pix * c, yy = pix / w, xx = pix - yy * w;
    const index_t oy = yy / size, ox = xx / size;
    T out = T(0);
    if (oy < ho && ox < wo) {
      const T g = grad_y(i, (oy * wo + ox) * c + ch);
      if (mode == Pooling::Avg) {
        out = div_rn(g, area);
      } else {
        const T* base = x.row(i) + ((oy * size) * w + ox * size) * c + ch;
        index_t arg = 0;
        pool_window(base, w, c, size, mode, &arg);
        if (arg == (yy - oy * size) * size + (xx - ox * size)) out = g;
      }
    }
    grad_x(i, j) = out;
  }
}

}  // namespace

template <class T>
void im2col(CMat<T> x, index_t h, index_t w, index_t c, index_t kh, index_t kw, Mat<T> cols) {
  launch(cols.rows * cols.cols, im2col_kernel<T>, x, w, c, kw, h - kh + 1, w - kw + 1, cols);
}

template <class T>
void col2im(CMat<T> cols, index_t h, index_t w, index_t c, index_t kh, index_t kw, Mat<T> x) {
  launch(x.rows * x.cols, col2im_kernel<T>, cols, w, c, kh, kw, h - kh + 1, w - kw + 1, x);
}

template <class T>
void pool_forward(CMat<T> x, index_t h, index_t w, index_t c, index_t size, Pooling mode,
                  Mat<T> y) {
  (void)h;
  launch(y.rows * y.cols, pool_forward_kernel<T>, x, w, c, size, mode, w / size, y);
}

template <class T>
void pool_backward(CMat<T> grad_y, CMat<T> x, index_t h, index_t w, index_t c, index_t size,
                   Pooling mode, Mat<T> grad_x) {
  launch(grad_x.rows * grad_x.cols, pool_backward_kernel<T>, grad_y, x, w, c, size, mode,
         h / size, w / size, grad_x);
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_CONV)

}  // namespace pymdbn::cuda
