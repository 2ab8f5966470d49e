// Binding of the LRP op.
#include "convert.h"

namespace pymdbn::bind {

namespace {

using py::arg;

LrpRule parse_rule(const std::string& s) {
  if (s == "epsilon") return LrpRule::Epsilon;
  if (s == "zplus") return LrpRule::ZPlus;
  if (s == "alpha_beta") return LrpRule::AlphaBeta;
  if (s == "gamma") return LrpRule::Gamma;
  if (s == "zbox") return LrpRule::ZBox;
  if (s == "flat") return LrpRule::Flat;
  if (s == "wsquare") return LrpRule::WSquare;
  fail("unknown LRP rule '" + s + "'");
}

py::object lrp_dense_py(Array x, Array w, Array b, Array relevance,
                       const std::string& rule, double epsilon, double gamma, double alpha,
                       double beta, py::object low, py::object high, bool use_bias,
                       py::object z, bool totals, bool overwrite_x) {
  const LrpRule r = parse_rule(rule);
  expect(epsilon >= 0, "epsilon must be >= 0");
  return dispatch(x, "x", [&](auto tag) -> py::object {
    using T = decltype(tag);
    auto xv = cmat<T>(x, "x");
    auto wv = cmat<T>(w, "w");
    auto bv = cvec<T>(b, "b");
    auto rv = cmat<T>(relevance, "relevance");
    expect(xv.cols == wv.rows, "x has " + std::to_string(xv.cols) + " columns but w has " +
                                   std::to_string(wv.rows) + " rows");
    expect(bv.size == wv.cols, "b must have n_out entries");
    expect(rv.rows == xv.rows && rv.cols == wv.cols, "relevance must be (n_samples, n_out)");
    LrpParams<T> p;
    p.rule = r;
    p.epsilon = T(epsilon);
    p.gamma = T(gamma);
    p.alpha = T(alpha);
    p.beta = T(beta);
    p.use_bias = use_bias;
    Array lo, hi;
    if (r == LrpRule::ZBox) {
      expect(!low.is_none() && !high.is_none(), "the zbox rule needs low and high");
      lo = low.cast<Array>();
      hi = high.cast<Array>();
      auto lv = cvec<T>(lo, "low");
      auto hv = cvec<T>(hi, "high");
      expect(lv.size == xv.cols && hv.size == xv.cols, "low and high must have n_in entries");
      p.low = lv.data;
      p.high = hv.data;
    }
    CMat<T> zv;
    Array za;
    if (!z.is_none()) {
      za = z.cast<Array>();
      zv = cmat<T>(za, "z");
      expect(zv.rows == xv.rows && zv.cols == wv.cols, "z must be (n_samples, n_out)");
    }
    // Only the epsilon rule can write its result over x (the others read x to the end).
    Array out =
        overwrite_x && r == LrpRule::Epsilon ? x : empty<T>(xv.rows, xv.cols);
    auto ov = mat<T>(out, "x");
    Array tot;
    double* tp = nullptr;
    if (totals) {
      tot = empty<double>(xv.rows, 2);
      tp = static_cast<double*>(mutable_ptr(tot));
    }
    without_gil([&] { kern::lrp_dense<T>(xv, wv, bv, rv, zv, p, ov, tp); });
    if (totals) return py::make_tuple(out, tot);
    return to_object(out);
  });
}

}  // namespace

void bind_lrp(py::module_& m) {
  m.def("lrp_dense", &lrp_dense_py, arg("x"), arg("w"), arg("b"), arg("relevance"),
        arg("rule") = "epsilon", arg("epsilon") = 1e-6, arg("gamma") = 0.25, arg("alpha") = 1.0,
        arg("beta") = 0.0, arg("low") = py::none(), arg("high") = py::none(),
        arg("use_bias") = true, arg("z") = py::none(), arg("totals") = false,
        arg("overwrite_x") = false);
}

}  // namespace pymdbn::bind
