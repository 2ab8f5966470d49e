// Bindings of the convolutional-pathway ops: im2col, col2im, pool_forward, pool_backward.
// The checks and messages are those of the NumPy twins (pymdbn/backend/reference.py).
#include <cstdint>
#include <string>
#include <vector>

#include "convert.h"

namespace pymdbn::bind {

namespace {

using py::arg;

// A tuple of `count` positive ints, or ValueError naming `what`.
std::vector<index_t> positive_ints(const py::object& obj, std::size_t count, const char* name,
                                   const char* what) {
  const py::tuple t(obj);
  std::vector<index_t> v;
  bool ok = t.size() == count;
  for (std::size_t i = 0; ok && i < count; ++i) {
    v.push_back(py::int_(t[i]).cast<index_t>());
    ok = v.back() >= 1;
  }
  if (!ok)
    fail(std::string(name) + " must be " + what + ", got " + std::string(py::str(t)));
  return v;
}

struct ConvDims {
  index_t h, w, c, kh, kw, ho, wo;
};

ConvDims conv_dims(const py::object& shape, const py::object& kernel) {
  const auto s = positive_ints(shape, 3, "shape", "three positive ints (H, W, C)");
  const auto k = positive_ints(kernel, 2, "kernel", "two positive ints (kh, kw)");
  expect(k[0] <= s[0] && k[1] <= s[1], "a " + std::to_string(k[0]) + "x" + std::to_string(k[1]) +
                                           " kernel does not fit a " + std::to_string(s[0]) +
                                           "x" + std::to_string(s[1]) + " image");
  return {s[0], s[1], s[2], k[0], k[1], s[0] - k[0] + 1, s[1] - k[1] + 1};
}

struct PoolDims {
  index_t h, w, c, p, ho, wo;
  Pooling mode;
};

PoolDims pool_dims(const py::object& shape, std::int64_t size, const std::string& mode) {
  const auto s = positive_ints(shape, 3, "shape", "three positive ints (H, W, C)");
  expect(size >= 1, "pool size must be >= 1, got " + std::to_string(size));
  expect(size <= s[0] && size <= s[1],
         "a " + std::to_string(size) + "x" + std::to_string(size) + " pool does not fit a " +
             std::to_string(s[0]) + "x" + std::to_string(s[1]) + " image");
  if (mode != "max" && mode != "avg") fail("pool mode must be 'max' or 'avg', got '" + mode + "'");
  return {s[0], s[1], s[2], size, s[0] / size, s[1] / size,
          mode == "max" ? Pooling::Max : Pooling::Avg};
}

void check_images(index_t cols, index_t h, index_t w, index_t c) {
  expect(cols == h * w * c, "x has " + std::to_string(cols) + " columns, expected H*W*C = " +
                                  std::to_string(h * w * c) + " for shape (" + std::to_string(h) +
                                  ", " + std::to_string(w) + ", " + std::to_string(c) + ")");
}

py::object im2col_py(Array x, py::object shape, py::object kernel) {
  const ConvDims d = conv_dims(shape, kernel);
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    check_images(xv.cols, d.h, d.w, d.c);
    return run<T>(xv.rows * d.ho * d.wo, d.kh * d.kw * d.c, [&](Mat<T> cols) {
      kern::im2col<T>(xv, d.h, d.w, d.c, d.kh, d.kw, cols);
    });
  });
}

py::object col2im_py(Array cols, py::object shape, py::object kernel) {
  const ConvDims d = conv_dims(shape, kernel);
  return dispatch(cols, "cols", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto cv = cmat<T>(cols, "cols");
    const index_t patches = d.ho * d.wo;
    expect(cv.rows % patches == 0, "cols has " + std::to_string(cv.rows) +
                                       " rows, not a multiple of Ho*Wo = " +
                                       std::to_string(patches));
    expect(cv.cols == d.kh * d.kw * d.c, "cols has " + std::to_string(cv.cols) +
                                             " columns, expected kh*kw*C = " +
                                             std::to_string(d.kh * d.kw * d.c));
    return run<T>(cv.rows / patches, d.h * d.w * d.c, [&](Mat<T> x) {
      kern::col2im<T>(cv, d.h, d.w, d.c, d.kh, d.kw, x);
    });
  });
}

py::object pool_forward_py(Array x, py::object shape, std::int64_t size,
                           const std::string& mode) {
  const PoolDims d = pool_dims(shape, size, mode);
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    check_images(xv.cols, d.h, d.w, d.c);
    return run<T>(xv.rows, d.ho * d.wo * d.c, [&](Mat<T> y) {
      kern::pool_forward<T>(xv, d.h, d.w, d.c, d.p, d.mode, y);
    });
  });
}

py::object pool_backward_py(Array grad_y, Array x, py::object shape, std::int64_t size,
                            const std::string& mode) {
  const PoolDims d = pool_dims(shape, size, mode);
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    check_images(xv.cols, d.h, d.w, d.c);
    auto gv = cmat<T>(grad_y, "grad_y");
    const index_t out_cols = d.ho * d.wo * d.c;
    expect(gv.rows == xv.rows && gv.cols == out_cols,
           "grad_y has shape " + shape_str(grad_y) + ", expected (n, Ho*Wo*C) = (" +
               std::to_string(xv.rows) + ", " + std::to_string(out_cols) + ")");
    return run<T>(xv.rows, d.h * d.w * d.c, [&](Mat<T> gx) {
      kern::pool_backward<T>(gv, xv, d.h, d.w, d.c, d.p, d.mode, gx);
    });
  });
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("im2col", &im2col_py, arg("x"), arg("shape"), arg("kernel"),
        "Patch matrix (n * Ho * Wo, kh * kw * C) of channels-last images x (n, H * W * C).");
  m.def("col2im", &col2im_py, arg("cols"), arg("shape"), arg("kernel"),
        "Adjoint of im2col: the patch entries summed back onto the pixels they copied.");
  m.def("pool_forward", &pool_forward_py, arg("x"), arg("shape"), arg("size"), arg("mode"),
        "Non-overlapping size x size 'max' or 'avg' pooling of channels-last images.");
  m.def("pool_backward", &pool_backward_py, arg("grad_y"), arg("x"), arg("shape"), arg("size"),
        arg("mode"), "Gradient of pool_forward w.r.t. x.");
}

}  // namespace pymdbn::bind
