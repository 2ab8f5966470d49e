// Bindings of the RBM ops: convert, check, release the GIL, call.
#include "convert.h"

namespace pymdbn::bind {

namespace {

using py::arg;

// x (n, k) times op(w) must be (n, b.size): returns the output width.
template <class T>
index_t check_affine(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b) {
  const index_t k = trans_w ? w.cols : w.rows, nout = trans_w ? w.rows : w.cols;
  expect(x.cols == k, "x has " + std::to_string(x.cols) + " columns but the weights expect " +
                          std::to_string(k));
  expect(b.size == nout, "bias has " + std::to_string(b.size) + " entries, expected " +
                             std::to_string(nout));
  return nout;
}

py::object affine_sigmoid_py(py::array x, py::array w, py::array b, py::object clip,
                             bool trans_w) {
  const double c = parse_clip(clip);
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b, "b");
    const index_t nout = check_affine(xv, wv, trans_w, bv);
    auto out = empty<T>(xv.rows, nout);
    auto ov = mat<T>(out, "out");
    py::gil_scoped_release nogil;
    affine_sigmoid<T>(xv, wv, trans_w, bv, T(c), ov);
    return std::move(out);
  });
}

py::object affine_py(py::array x, py::array w, py::array b, bool trans_w) {
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b, "b");
    const index_t nout = check_affine(xv, wv, trans_w, bv);
    auto out = empty<T>(xv.rows, nout);
    auto ov = mat<T>(out, "out");
    py::gil_scoped_release nogil;
    affine<T>(xv, wv, trans_w, bv, ov);
    return std::move(out);
  });
}

py::object sample_bernoulli_py(py::array p, std::uint64_t seed, std::uint64_t stream) {
  return dispatch(p, "p", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto pv = cmat<T>(p, "p");
    auto out = empty<T>(pv.rows, pv.cols);
    auto ov = mat<T>(out, "out");
    py::gil_scoped_release nogil;
    sample_bernoulli<T>(pv, CounterRNG{seed, stream}, ov);
    return std::move(out);
  });
}

py::object sample_gaussian_py(py::array mean, std::uint64_t seed, std::uint64_t stream) {
  return dispatch(mean, "mean", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto mv = cmat<T>(mean, "mean");
    auto out = empty<T>(mv.rows, mv.cols);
    auto ov = mat<T>(out, "out");
    py::gil_scoped_release nogil;
    sample_gaussian<T>(mv, CounterRNG{seed, stream}, ov);
    return std::move(out);
  });
}

py::array random_bits_py(py::ssize_t rows, py::ssize_t cols, std::uint64_t seed,
                         std::uint64_t stream) {
  expect(rows >= 0 && cols >= 0, "rows and cols must be non-negative");
  auto out = empty<std::uint32_t>(rows, cols);
  Mat<std::uint32_t> ov(out.mutable_data(), rows, cols);
  py::gil_scoped_release nogil;
  random_bits(CounterRNG{seed, stream}, ov);
  return std::move(out);
}

py::tuple gibbs_hidden_py(py::array v, py::array w, py::array b_hidden, py::object clip,
                          std::uint64_t seed, std::uint64_t stream) {
  const double c = parse_clip(clip);
  return dispatch(v, "v", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto vv = cmat<T>(v, "v");
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b_hidden, "b_hidden");
    const index_t nh = check_affine(vv, wv, true, bv);
    auto prob = empty<T>(vv.rows, nh), sample = empty<T>(vv.rows, nh);
    auto pv = mat<T>(prob, "prob");
    auto sv = mat<T>(sample, "sample");
    {
      py::gil_scoped_release nogil;
      gibbs_hidden<T>(vv, wv, bv, T(c), CounterRNG{seed, stream}, pv, sv);
    }
    return py::make_tuple(prob, sample);
  });
}

py::tuple gibbs_visible_py(py::array h, py::array w, py::array b_visible,
                           const std::string& visible, py::object clip, std::uint64_t seed,
                           std::uint64_t stream) {
  const double c = parse_clip(clip);
  const Visible vis = parse_visible(visible);
  return dispatch(h, "h", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto hv = cmat<T>(h, "h");
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b_visible, "b_visible");
    const index_t nv = check_affine(hv, wv, false, bv);
    auto mean = empty<T>(hv.rows, nv), sample = empty<T>(hv.rows, nv);
    auto mv = mat<T>(mean, "mean");
    auto sv = mat<T>(sample, "sample");
    {
      py::gil_scoped_release nogil;
      gibbs_visible<T>(hv, wv, bv, vis, T(c), CounterRNG{seed, stream}, mv, sv);
    }
    return py::make_tuple(mean, sample);
  });
}

py::tuple cd_epoch_py(py::array x, py::array order, py::ssize_t batch_size, py::array w,
                      py::array b_visible, py::array b_hidden, py::array v_w,
                      py::array v_b_visible, py::array v_b_hidden, py::array chain, int k,
                      bool persistent, const std::string& visible, py::object clip,
                      double learning_rate, double momentum, double weight_decay,
                      double sparsity_target, double sparsity_cost, std::uint64_t seed,
                      std::uint64_t first_step) {
  const double c = parse_clip(clip);
  const Visible vis = parse_visible(visible);
  expect(k >= 1 && k <= 127, "k must be in [1, 127]");
  expect(batch_size >= 1, "batch_size must be >= 1");
  check_array<std::int64_t>(order, "order", 1, false);
  return dispatch(x, "x", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    RBMState<T> s{mat<T>(w, "w"),     vec<T>(b_visible, "b_visible"),
                  vec<T>(b_hidden, "b_hidden"), mat<T>(v_w, "v_w"),
                  vec<T>(v_b_visible, "v_b_visible"), vec<T>(v_b_hidden, "v_b_hidden"),
                  Mat<T>()};
    const index_t nh = s.w.rows, nv = s.w.cols;
    expect(xv.cols == nv, "x has " + std::to_string(xv.cols) + " features, the RBM has " +
                              std::to_string(nv));
    expect(s.b_visible.size == nv && s.v_b_visible.size == nv && s.v_w.rows == nh &&
               s.v_w.cols == nv && s.b_hidden.size == nh && s.v_b_hidden.size == nh,
           "parameter and velocity shapes disagree");
    if (persistent) {
      s.chain = mat<T>(chain, "chain");
      expect(s.chain.cols == nh && s.chain.rows >= std::min<index_t>(batch_size, xv.rows),
             "chain must be (batch_size, n_hidden)");
    }
    const auto* ord = static_cast<const std::int64_t*>(order.data());
    const index_t n = order.shape(0);
    for (index_t i = 0; i < n; ++i)
      expect(ord[i] >= 0 && ord[i] < xv.rows, "order holds an index out of range");
    CDConfig<T> cfg;
    cfg.k = k;
    cfg.persistent = persistent;
    cfg.visible = vis;
    cfg.clip = T(c);
    cfg.learning_rate = T(learning_rate);
    cfg.momentum = T(momentum);
    cfg.weight_decay = T(weight_decay);
    cfg.sparsity_target = T(sparsity_target);
    cfg.sparsity_cost = T(sparsity_cost);
    cfg.seed = seed;
    EpochStats st;
    {
      py::gil_scoped_release nogil;
      st = cd_epoch<T>(xv, ord, n, batch_size, s, cfg, first_step);
    }
    return py::make_tuple(st.sum_squared_error, st.n_batches);
  });
}

py::object free_energy_py(py::array v, py::array w, py::array b_visible, py::array b_hidden,
                          const std::string& visible) {
  const Visible vis = parse_visible(visible);
  return dispatch(v, "v", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto vv = cmat<T>(v, "v");
    auto wv = cmat<T>(w, "w");
    auto bvv = cvec<T>(b_visible, "b_visible");
    auto bhv = cvec<T>(b_hidden, "b_hidden");
    check_affine(vv, wv, true, bhv);
    expect(bvv.size == vv.cols, "b_visible does not match the number of features");
    py::array_t<T> out(vv.rows);
    Vec<T> ov(out.mutable_data(), vv.rows);
    py::gil_scoped_release nogil;
    free_energy<T>(vv, wv, bvv, bhv, vis, ov);
    return std::move(out);
  });
}

py::array ais_py(py::array w, py::array b_visible, py::array b_hidden, py::array base_b_visible,
                 py::array betas, py::ssize_t n_runs, std::uint64_t seed) {
  expect(n_runs >= 1, "n_runs must be >= 1");
  auto bt = cvec<double>(betas, "betas");
  expect(bt.size >= 2 && bt[0] == 0.0 && bt[bt.size - 1] == 1.0,
         "betas must start at 0, end at 1 and have at least 2 entries");
  for (index_t i = 1; i < bt.size; ++i) expect(bt[i] >= bt[i - 1], "betas must be non-decreasing");
  return dispatch(w, "w", [&](auto tag) -> py::array {
    using T = decltype(tag);
    auto wv = cmat<T>(w, "w");
    auto bvv = cvec<T>(b_visible, "b_visible");
    auto bhv = cvec<T>(b_hidden, "b_hidden");
    auto base = cvec<T>(base_b_visible, "base_b_visible");
    expect(bvv.size == wv.cols && base.size == wv.cols && bhv.size == wv.rows,
           "bias shapes do not match the weights");
    py::array_t<double> out(n_runs);
    Vec<double> ov(out.mutable_data(), n_runs);
    py::gil_scoped_release nogil;
    ais_log_weights<T>(wv, bvv, bhv, base, bt, seed, ov);
    return std::move(out);
  });
}

}  // namespace

void bind_rbm(py::module_& m) {
  m.def("affine_sigmoid", &affine_sigmoid_py, arg("x"), arg("w"), arg("b"), arg("clip"),
        arg("trans_w"));
  m.def("affine", &affine_py, arg("x"), arg("w"), arg("b"), arg("trans_w"));
  m.def("sample_bernoulli", &sample_bernoulli_py, arg("p"), arg("seed"), arg("stream"));
  m.def("sample_gaussian", &sample_gaussian_py, arg("mean"), arg("seed"), arg("stream"));
  m.def("random_bits", &random_bits_py, arg("rows"), arg("cols"), arg("seed"), arg("stream"));
  m.def("gibbs_hidden", &gibbs_hidden_py, arg("v"), arg("w"), arg("b_hidden"), arg("clip"),
        arg("seed"), arg("stream"));
  m.def("gibbs_visible", &gibbs_visible_py, arg("h"), arg("w"), arg("b_visible"),
        arg("visible"), arg("clip"), arg("seed"), arg("stream"));
  m.def("cd_epoch", &cd_epoch_py, arg("x"), arg("order"), arg("batch_size"), arg("w"),
        arg("b_visible"), arg("b_hidden"), arg("v_w"), arg("v_b_visible"), arg("v_b_hidden"),
        arg("chain"), arg("k"), arg("persistent"), arg("visible"), arg("clip"),
        arg("learning_rate"), arg("momentum"), arg("weight_decay"), arg("sparsity_target"),
        arg("sparsity_cost"), arg("seed"), arg("first_step"));
  m.def("free_energy", &free_energy_py, arg("v"), arg("w"), arg("b_visible"), arg("b_hidden"),
        arg("visible"));
  m.def("ais_log_weights", &ais_py, arg("w"), arg("b_visible"), arg("b_hidden"),
        arg("base_b_visible"), arg("betas"), arg("n_runs"), arg("seed"));
}

}  // namespace pymdbn::bind
