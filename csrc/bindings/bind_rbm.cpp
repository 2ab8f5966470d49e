// Bindings of the RBM ops: each converts and checks its arguments, then runs the CPU
// kernel through the adapter in convert.h (dtype dispatch, outputs, GIL release).
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

// The ops of the form x op(w) + b -> N outputs of (rows, n_out): converts x (named xn),
// w and b (named bn) in x's dtype, checks the shapes and runs
// kernel(T{}, x, w, b, outputs...) without the GIL.
template <std::size_t N, class K>
py::object affine_op(const Array& x, const char* xn, const Array& w,
                     const Array& b, const char* bn, bool trans_w, K&& kernel) {
  return dispatch(x, xn, [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, xn);
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b, bn);
    const index_t nout = check_affine(xv, wv, trans_w, bv);
    return run<T, N>(xv.rows, nout, [&](auto... out) { kernel(tag, xv, wv, bv, out...); });
  });
}

// A sampler: a new array of a's shape and dtype from kernel(a, rng, out).
template <class K>
py::object sampler(const Array& a, const char* name, CounterRNG rng, K&& kernel) {
  return dispatch(a, name, [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto av = cmat<T>(a, name);
    return run<T>(av.rows, av.cols, [&](Mat<T> out) { kernel(av, rng, out); });
  });
}

py::object affine_sigmoid_py(Array x, Array w, Array b, py::object clip,
                             bool trans_w) {
  const double c = parse_clip(clip);
  return affine_op<1>(x, "x", w, b, "b", trans_w, [&](auto tag, auto xv, auto wv, auto bv, auto o) {
    kern::affine_sigmoid(xv, wv, trans_w, bv, decltype(tag)(c), o);
  });
}

py::object affine_py(Array x, Array w, Array b, bool trans_w) {
  return affine_op<1>(x, "x", w, b, "b", trans_w, [&](auto, auto xv, auto wv, auto bv, auto o) {
    kern::affine(xv, wv, trans_w, bv, o);
  });
}

py::object sample_bernoulli_py(Array p, std::uint64_t seed, std::uint64_t stream,
                               std::uint64_t row_offset) {
  return sampler(p, "p", CounterRNG{seed, stream, row_offset},
                 [](auto pv, CounterRNG rng, auto o) { kern::sample_bernoulli(pv, rng, o); });
}

py::object sample_gaussian_py(Array mean, std::uint64_t seed, std::uint64_t stream,
                              std::uint64_t row_offset) {
  return sampler(mean, "mean", CounterRNG{seed, stream, row_offset},
                 [](auto mv, CounterRNG rng, auto o) { kern::sample_gaussian(mv, rng, o); });
}

py::object random_bits_py(py::ssize_t rows, py::ssize_t cols, std::uint64_t seed,
                          std::uint64_t stream, std::uint64_t row_offset) {
  expect(rows >= 0 && cols >= 0, "rows and cols must be non-negative");
  return run<std::uint32_t>(rows, cols, [&](Mat<std::uint32_t> o) {
    kern::random_bits(CounterRNG{seed, stream, row_offset}, o);
  });
}

py::object gibbs_hidden_py(Array v, Array w, Array b_hidden, py::object clip,
                           std::uint64_t seed, std::uint64_t stream, std::uint64_t row_offset) {
  const double c = parse_clip(clip);
  const CounterRNG rng{seed, stream, row_offset};
  return affine_op<2>(v, "v", w, b_hidden, "b_hidden", true,
                      [&](auto tag, auto vv, auto wv, auto bv, auto prob, auto sample) {
                        kern::gibbs_hidden(vv, wv, bv, decltype(tag)(c), rng, prob, sample);
                      });
}

py::object gibbs_visible_py(Array h, Array w, Array b_visible,
                            const std::string& visible, py::object clip, std::uint64_t seed,
                            std::uint64_t stream, std::uint64_t row_offset) {
  const double c = parse_clip(clip);
  const Visible vis = parse_visible(visible);
  const CounterRNG rng{seed, stream, row_offset};
  return affine_op<2>(h, "h", w, b_visible, "b_visible", false,
                      [&](auto tag, auto hv, auto wv, auto bv, auto mean, auto sample) {
                        kern::gibbs_visible(hv, wv, bv, vis, decltype(tag)(c), rng, mean, sample);
                      });
}

// The CD options, checked, in double until the dtype is known.
CDConfig<double> sampling_options(int k, bool persistent, const std::string& visible,
                                  const py::object& clip, std::uint64_t seed) {
  expect(k >= 1 && k <= 127, "k must be in [1, 127]");
  CDConfig<double> o;
  o.k = k;
  o.persistent = persistent;
  o.visible = parse_visible(visible);
  o.clip = parse_clip(clip);
  o.seed = seed;
  return o;
}

void set_update_options(CDConfig<double>& o, double learning_rate, double momentum,
                        double weight_decay, double sparsity_target, double sparsity_cost) {
  o.learning_rate = learning_rate;
  o.momentum = momentum;
  o.weight_decay = weight_decay;
  o.sparsity_target = sparsity_target;
  o.sparsity_cost = sparsity_cost;
}

template <class T>
CDConfig<T> in_type(const CDConfig<double>& o) {
  CDConfig<T> c;
  c.k = o.k;
  c.persistent = o.persistent;
  c.visible = o.visible;
  c.clip = T(o.clip);
  c.learning_rate = T(o.learning_rate);
  c.momentum = T(o.momentum);
  c.weight_decay = T(o.weight_decay);
  c.sparsity_target = T(o.sparsity_target);
  c.sparsity_cost = T(o.sparsity_cost);
  c.seed = o.seed;
  return c;
}

// An RBM's weights w (n_hidden, n_visible) and biases, converted in T and checked.
template <class T>
struct RBMParams {
  CMat<T> w;
  CVec<T> b_visible, b_hidden;
};

template <class T>
RBMParams<T> rbm_params(const Array& w, const Array& b_visible,
                        const Array& b_hidden) {
  RBMParams<T> p{cmat<T>(w, "w"), cvec<T>(b_visible, "b_visible"), cvec<T>(b_hidden, "b_hidden")};
  expect(p.b_visible.size == p.w.cols, "b_visible has " + std::to_string(p.b_visible.size) +
                                           " entries, w has " + std::to_string(p.w.cols) +
                                           " columns");
  expect(p.b_hidden.size == p.w.rows, "b_hidden has " + std::to_string(p.b_hidden.size) +
                                          " entries, w has " + std::to_string(p.w.rows) + " rows");
  return p;
}

// The parameters and velocities of an RBM, converted and checked against each other
// (the chain is left empty).
template <class T>
RBMState<T> rbm_state(Array& w, Array& b_visible, Array& b_hidden, Array& v_w,
                      Array& v_b_visible, Array& v_b_hidden) {
  RBMState<T> s{mat<T>(w, "w"),     vec<T>(b_visible, "b_visible"),
                vec<T>(b_hidden, "b_hidden"), mat<T>(v_w, "v_w"),
                vec<T>(v_b_visible, "v_b_visible"), vec<T>(v_b_hidden, "v_b_hidden"),
                Mat<T>()};
  const index_t nh = s.w.rows, nv = s.w.cols;
  expect(s.b_visible.size == nv && s.v_b_visible.size == nv && s.v_w.rows == nh &&
             s.v_w.cols == nv && s.b_hidden.size == nh && s.v_b_hidden.size == nh,
         "parameter and velocity shapes disagree");
  return s;
}

// The persistent chain for a batch of `rows` rows (an empty view when not persistent).
template <class T>
Mat<T> chain_view(Array& chain, bool persistent, index_t n_hidden, index_t rows) {
  if (!persistent) return Mat<T>();
  Mat<T> c = mat<T>(chain, "chain");
  expect(c.cols == n_hidden && c.rows >= rows, "chain must be (batch_size, n_hidden)");
  return c;
}

py::tuple cd_epoch_py(Array x, py::array order, py::ssize_t batch_size, Array w,
                      Array b_visible, Array b_hidden, Array v_w,
                      Array v_b_visible, Array v_b_hidden, Array chain, int k,
                      bool persistent, const std::string& visible, py::object clip,
                      double learning_rate, double momentum, double weight_decay,
                      double sparsity_target, double sparsity_cost, std::uint64_t seed,
                      std::uint64_t first_step) {
  CDConfig<double> opt = sampling_options(k, persistent, visible, clip, seed);
  set_update_options(opt, learning_rate, momentum, weight_decay, sparsity_target,
                     sparsity_cost);
  expect(batch_size >= 1, "batch_size must be >= 1");
  check_array<std::int64_t>(order, "order", 1, false);
  return dispatch(x, "x", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    RBMState<T> s = rbm_state<T>(w, b_visible, b_hidden, v_w, v_b_visible, v_b_hidden);
    const index_t nv = s.w.cols;
    expect(xv.cols == nv, "x has " + std::to_string(xv.cols) + " features, the RBM has " +
                              std::to_string(nv));
    const auto* ord = static_cast<const std::int64_t*>(order.data());
    const index_t n = order.shape(0);
    // A batch has min(batch_size, len(order)) rows: order may repeat rows of x.
    s.chain = chain_view<T>(chain, persistent, s.w.rows, std::min<index_t>(batch_size, n));
    for (index_t i = 0; i < n; ++i)
      expect(ord[i] >= 0 && ord[i] < xv.rows, "order holds an index out of range");
    const CDConfig<T> cfg = in_type<T>(opt);
    const EpochStats st =
        without_gil([&] { return kern::cd_epoch<T>(xv, ord, n, batch_size, s, cfg, first_step); });
    return py::make_tuple(st.sum_squared_error, st.n_batches);
  });
}

py::tuple cd_gradient_py(Array v0, Array w, Array b_visible, Array b_hidden,
                         py::object chain, int k, bool persistent, const std::string& visible,
                         py::object clip, std::uint64_t seed, std::uint64_t step,
                         std::uint64_t row_offset) {
  const CDConfig<double> opt = sampling_options(k, persistent, visible, clip, seed);
  if (persistent && !is_array(chain))
    throw py::type_error(std::string("chain: persistent CD needs the chain as a ") + kArrayKind);
  return dispatch(v0, "v0", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto vv = cmat<T>(v0, "v0");
    const RBMParams<T> p = rbm_params<T>(w, b_visible, b_hidden);
    check_affine(vv, p.w, true, p.b_hidden);
    expect(vv.rows >= 1, "v0 must have at least one row");
    Array ca = persistent ? chain.cast<Array>() : Array();
    const Mat<T> cv = chain_view<T>(ca, persistent, p.w.rows, vv.rows);
    auto h = empty<T>(2 * vv.rows, p.w.rows), v = empty<T>(2 * vv.rows, p.w.cols);
    auto hv = mat<T>(h, "h");
    auto vo = mat<T>(v, "v");
    const CDConfig<T> cfg = in_type<T>(opt);
    const double sq = without_gil([&] {
      return kern::cd_gradient<T>(vv, p.w, p.b_visible, p.b_hidden, cv, cfg, step, row_offset, hv, vo);
    });
    return py::make_tuple(h, v, sq);
  });
}

void cd_apply_py(Array h, Array v, Array w, Array b_visible, Array b_hidden,
                 Array v_w, Array v_b_visible, Array v_b_hidden,
                 double learning_rate, double momentum, double weight_decay,
                 double sparsity_target, double sparsity_cost) {
  CDConfig<double> opt;
  set_update_options(opt, learning_rate, momentum, weight_decay, sparsity_target,
                     sparsity_cost);
  dispatch(w, "w", [&](auto tag) {
    using T = decltype(tag);
    RBMState<T> s = rbm_state<T>(w, b_visible, b_hidden, v_w, v_b_visible, v_b_hidden);
    auto hv = cmat<T>(h, "h");
    auto vv = cmat<T>(v, "v");
    expect(hv.rows >= 2 && hv.rows % 2 == 0 && hv.cols == s.w.rows,
           "h must be (2 * batch, n_hidden), got " + shape_str(h));
    expect(vv.rows == hv.rows && vv.cols == s.w.cols,
           "v must be (2 * batch, n_visible) with h's rows, got " + shape_str(v));
    const CDConfig<T> cfg = in_type<T>(opt);
    without_gil([&] { kern::cd_apply<T>(hv, vv, s, cfg); });
  });
}

py::object free_energy_py(Array v, Array w, Array b_visible, Array b_hidden,
                          const std::string& visible) {
  const Visible vis = parse_visible(visible);
  return dispatch(v, "v", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto vv = cmat<T>(v, "v");
    const RBMParams<T> p = rbm_params<T>(w, b_visible, b_hidden);
    check_affine(vv, p.w, true, p.b_hidden);
    Array out = empty<T>(vv.rows);
    Vec<T> ov(static_cast<T*>(mutable_ptr(out)), vv.rows);
    without_gil([&] { kern::free_energy<T>(vv, p.w, p.b_visible, p.b_hidden, vis, ov); });
    return to_object(out);
  });
}

py::object ais_py(Array w, Array b_visible, Array b_hidden, Array base_b_visible,
                 py::array betas, py::ssize_t n_runs, std::uint64_t seed) {
  expect(n_runs >= 1, "n_runs must be >= 1");
  auto bt = cvec<double>(betas, "betas");
  expect(bt.size >= 2 && bt[0] == 0.0 && bt[bt.size - 1] == 1.0,
         "betas must start at 0, end at 1 and have at least 2 entries");
  for (index_t i = 1; i < bt.size; ++i) expect(bt[i] >= bt[i - 1], "betas must be non-decreasing");
  return dispatch(w, "w", [&](auto tag) -> py::object {
    using T = decltype(tag);
    const RBMParams<T> p = rbm_params<T>(w, b_visible, b_hidden);
    auto base = cvec<T>(base_b_visible, "base_b_visible");
    expect(base.size == p.w.cols, "base_b_visible must have one entry per column of w");
    Array out = empty<double>(n_runs);
    Vec<double> ov(static_cast<double*>(mutable_ptr(out)), n_runs);
    without_gil([&] {
      kern::ais_log_weights<T>(p.w, p.b_visible, p.b_hidden, base, bt, seed, ov);
    });
    return to_object(out);
  });
}

const char* const kCdGradientDoc =
    "One mini-batch's CD-k (PCD-k) gradient in factored form: returns (h, v, sq_err) with "
    "h = [ph0; -phn] (2b, n_hidden), v = [v0; vs] (2b, n_visible) and the summed squared "
    "reconstruction error; the chain is updated in place when persistent. h^T v is b times "
    "the weight gradient. Factored so that cd_apply performs exactly the fused cd_epoch's "
    "update (one GEMM with beta = momentum; a dense gradient added afterwards would round "
    "differently), and so that data-parallel processes all-gather their rows of h and v, "
    "b (n_visible + n_hidden) numbers instead of n_visible n_hidden, and every process "
    "applies the same update bit for bit. Draws come from streams step * 256 + j with row "
    "counters row_offset + i, so rows [r0, r1) of a batch drawn with row_offset=r0 equal "
    "the whole batch's rows.";

const char* const kCdApplyDoc =
    "The apply step for cd_gradient's factored gradient (h, v), in place: exactly the "
    "update of the fused cd_epoch (v_w = momentum v_w + lr / b h^T v as one GEMM, then the "
    "bias, sparsity and weight-decay terms; parameters += velocities), so every process "
    "that applies the same all-gathered (h, v) gets the same parameters bit for bit.";

}  // namespace

void bind_rbm(py::module_& m) {
  m.def("affine_sigmoid", &affine_sigmoid_py, arg("x"), arg("w"), arg("b"), arg("clip"),
        arg("trans_w"));
  m.def("affine", &affine_py, arg("x"), arg("w"), arg("b"), arg("trans_w"));
  m.def("sample_bernoulli", &sample_bernoulli_py, arg("p"), arg("seed"), arg("stream"),
        arg("row_offset") = 0);
  m.def("sample_gaussian", &sample_gaussian_py, arg("mean"), arg("seed"), arg("stream"),
        arg("row_offset") = 0);
  m.def("random_bits", &random_bits_py, arg("rows"), arg("cols"), arg("seed"), arg("stream"),
        arg("row_offset") = 0);
  m.def("gibbs_hidden", &gibbs_hidden_py, arg("v"), arg("w"), arg("b_hidden"), arg("clip"),
        arg("seed"), arg("stream"), arg("row_offset") = 0);
  m.def("gibbs_visible", &gibbs_visible_py, arg("h"), arg("w"), arg("b_visible"),
        arg("visible"), arg("clip"), arg("seed"), arg("stream"), arg("row_offset") = 0);
  m.def("cd_epoch", &cd_epoch_py, arg("x"), arg("order"), arg("batch_size"), arg("w"),
        arg("b_visible"), arg("b_hidden"), arg("v_w"), arg("v_b_visible"), arg("v_b_hidden"),
        arg("chain"), arg("k"), arg("persistent"), arg("visible"), arg("clip"),
        arg("learning_rate"), arg("momentum"), arg("weight_decay"), arg("sparsity_target"),
        arg("sparsity_cost"), arg("seed"), arg("first_step"));
  m.def("cd_gradient", &cd_gradient_py, arg("v0"), arg("w"), arg("b_visible"), arg("b_hidden"),
        arg("chain"), arg("k"), arg("persistent"), arg("visible"), arg("clip"), arg("seed"),
        arg("step"), arg("row_offset") = 0, kCdGradientDoc);
  m.def("cd_apply", &cd_apply_py, arg("h"), arg("v"), arg("w"), arg("b_visible"),
        arg("b_hidden"), arg("v_w"), arg("v_b_visible"), arg("v_b_hidden"),
        arg("learning_rate"), arg("momentum"), arg("weight_decay"), arg("sparsity_target"),
        arg("sparsity_cost"), kCdApplyDoc);
  m.def("free_energy", &free_energy_py, arg("v"), arg("w"), arg("b_visible"), arg("b_hidden"),
        arg("visible"));
  m.def("ais_log_weights", &ais_py, arg("w"), arg("b_visible"), arg("b_hidden"),
        arg("base_b_visible"), arg("betas"), arg("n_runs"), arg("seed"));
}

}  // namespace pymdbn::bind
