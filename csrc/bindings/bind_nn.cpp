// Bindings of the dense-network ops used for fine-tuning.
#include "convert.h"

namespace pymdbn::bind {

namespace {

using py::arg;

Activation parse_activation(const std::string& s) {
  if (s == "sigmoid") return Activation::Sigmoid;
  if (s == "linear") return Activation::Linear;
  fail("activation must be 'sigmoid' or 'linear', got '" + s + "'");
}

template <class T>
void check_layer(CMat<T> x, CMat<T> w, index_t b_size) {
  expect(x.cols == w.rows, "x has " + std::to_string(x.cols) + " columns but w has " +
                               std::to_string(w.rows) + " rows");
  expect(b_size == w.cols, "bias has " + std::to_string(b_size) + " entries, expected " +
                               std::to_string(w.cols));
}

template <class T>
void check_same_shape(CMat<T> a, CMat<T> b, const char* an, const char* bn) {
  expect(a.rows == b.rows && a.cols == b.cols,
         std::string(an) + " and " + bn + " must have the same shape");
}

py::object dense_forward_py(Array x, Array w, Array b, py::object clip,
                            const std::string& activation) {
  const double c = parse_clip(clip);
  const Activation act = parse_activation(activation);
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b, "b");
    check_layer(xv, wv, bv.size);
    return run<T, 2>(xv.rows, wv.cols, [&](Mat<T> z, Mat<T> a) {
      kern::dense_forward<T>(xv, wv, bv, T(c), act, z, a);
    });
  });
}

py::tuple dense_backward_py(Array grad_a, Array z, Array a, Array x,
                            Array w, py::object clip, const std::string& activation,
                            bool need_grad_x) {
  const double c = parse_clip(clip);
  const Activation act = parse_activation(activation);
  return dispatch(x, "x", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto gv = cmat<T>(grad_a, "grad_a");
    auto zv = cmat<T>(z, "z");
    auto av = cmat<T>(a, "a");
    auto xv = cmat<T>(x, "x");
    auto wv = cmat<T>(w, "w");
    expect(xv.cols == wv.rows, "x and w do not match");
    expect(gv.rows == xv.rows && gv.cols == wv.cols, "grad_a must be (n_samples, n_out)");
    check_same_shape<T>(gv, zv, "grad_a", "z");
    check_same_shape<T>(gv, av, "grad_a", "a");
    py::object gx = py::none();
    Mat<T> gxv;
    if (need_grad_x) {
      auto arr = empty<T>(xv.rows, xv.cols);
      gxv = mat<T>(arr, "grad_x");
      gx = to_object(arr);
    }
    auto gw = empty<T>(wv.rows, wv.cols);
    Array gb = empty<T>(wv.cols);
    auto dz = empty<T>(gv.rows, gv.cols);
    auto gwv = mat<T>(gw, "grad_w");
    auto dzv = mat<T>(dz, "dz");
    Vec<T> gbv(static_cast<T*>(mutable_ptr(gb)), wv.cols);
    without_gil([&] { kern::dense_backward<T>(gv, zv, av, xv, wv, T(c), act, gxv, gwv, gbv, dzv); });
    return py::make_tuple(gx, gw, gb);
  });
}

py::tuple softmax_xent_py(Array logits, Array y, py::object sample_weight) {
  check_array<std::int64_t>(y, "y", 1, false);
  return dispatch(logits, "logits", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto lv = cmat<T>(logits, "logits");
    expect(lv.rows >= 1 && lv.cols >= 1, "logits must be non-empty");
    expect(y.shape(0) == lv.rows, "y must have one label per row of logits");
    const auto* yv = static_cast<const std::int64_t*>(y.data());
    const HostValues<std::int64_t> labels(y);
    for (index_t i = 0; i < lv.rows; ++i)
      expect(labels[i] >= 0 && labels[i] < lv.cols, "labels must be in [0, n_classes)");
    const double* wptr = nullptr;
    Array wa;
    if (!sample_weight.is_none()) {
      wa = sample_weight.cast<Array>();
      auto wv = cvec<double>(wa, "sample_weight");
      expect(wv.size == lv.rows, "sample_weight must have one entry per row");
      const HostValues<double> weights(wa);
      double total = 0;
      for (index_t i = 0; i < wv.size; ++i) {
        expect(weights[i] >= 0 && std::isfinite(weights[i]),
               "sample_weight must be finite and >= 0");
        total += weights[i];
      }
      expect(total > 0, "sample_weight must not sum to 0");
      wptr = wv.data;
    }
    auto grad = empty<T>(lv.rows, lv.cols), proba = empty<T>(lv.rows, lv.cols);
    auto gv = mat<T>(grad, "grad");
    auto pv = mat<T>(proba, "proba");
    const double loss =
        without_gil([&] { return kern::softmax_cross_entropy<T>(lv, yv, wptr, gv, pv); });
    return py::make_tuple(loss, grad, proba);
  });
}

void sgd_py(Array param, Array grad, Array velocity, double lr, double momentum,
            double weight_decay) {
  dispatch(param, "param", [&](auto tag) {
    using T = decltype(tag);
    auto p = flat<T>(param, "param");
    auto v = flat<T>(velocity, "velocity");
    check_array<T>(grad, "grad", int(grad.ndim()), false);
    expect(grad.size() == p.size && v.size == p.size, "param, grad and velocity sizes differ");
    CVec<T> g(static_cast<const T*>(grad.data()), p.size);
    without_gil([&] { kern::sgd_momentum_update<T>(p, g, v, T(lr), T(momentum), T(weight_decay)); });
  });
}

void adam_py(Array param, Array grad, Array m, Array v, double lr, double beta1,
             double beta2, double eps, std::int64_t t, double weight_decay) {
  expect(t >= 1, "t must be >= 1");
  dispatch(param, "param", [&](auto tag) {
    using T = decltype(tag);
    auto p = flat<T>(param, "param");
    auto mv = flat<T>(m, "m");
    auto vv = flat<T>(v, "v");
    check_array<T>(grad, "grad", int(grad.ndim()), false);
    expect(grad.size() == p.size && mv.size == p.size && vv.size == p.size,
           "param, grad, m and v sizes differ");
    CVec<T> g(static_cast<const T*>(grad.data()), p.size);
    without_gil([&] {
      kern::adam_update<T>(p, g, mv, vv, T(lr), T(beta1), T(beta2), T(eps), t, T(weight_decay));
    });
  });
}

}  // namespace

void bind_nn(py::module_& m) {
  m.def("dense_forward", &dense_forward_py, arg("x"), arg("w"), arg("b"), arg("clip"),
        arg("activation"));
  m.def("dense_backward", &dense_backward_py, arg("grad_a"), arg("z"), arg("a"), arg("x"),
        arg("w"), arg("clip"), arg("activation"), arg("need_grad_x"));
  m.def("softmax_cross_entropy", &softmax_xent_py, arg("logits"), arg("y"),
        arg("sample_weight"));
  m.def("sgd_momentum_update", &sgd_py, arg("param"), arg("grad"), arg("velocity"),
        arg("learning_rate"), arg("momentum"), arg("weight_decay"));
  m.def("adam_update", &adam_py, arg("param"), arg("grad"), arg("m"), arg("v"),
        arg("learning_rate"), arg("beta1"), arg("beta2"), arg("epsilon"), arg("t"),
        arg("weight_decay"));
}

}  // namespace pymdbn::bind
