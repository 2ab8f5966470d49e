// CD-k / PCD-k on the device: the gradient step, the apply step and the fused epoch. As
// on the CPU, the epoch runs the same internal gradient and apply functions as
// cd_gradient and cd_apply, so the two paths compute the same numbers bit for bit; the
// epoch keeps the squared error on the device and reads it back once.
#include <stdexcept>

#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// row_sq[i] = sum_j (a(i, j) - b(i, j))^2 in double, one warp per row (lane l sums
// columns l, l + 32, ... in order, then warp_sum).
template <class T>
__global__ void row_sq_kernel(CMat<T> a, CMat<T> b, double* row_sq) {
  const index_t lane = threadIdx.x % kWarp;
  const index_t warps = index_t(gridDim.x) * blockDim.x / kWarp;
  for (index_t i = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; i < a.rows;
       i += warps) {
    double acc = 0;
    for (index_t j = lane; j < a.cols; j += kWarp) {
      const double d = double(a(i, j)) - double(b(i, j));
      acc += d * d;
    }
    acc = warp_sum(acc);
    if (lane == 0) row_sq[i] = acc;
  }
}

// *total += the rows' sum taken in row order (the CPU's order), on one thread.
__global__ void add_rows_kernel(const double* row_sq, index_t n, double* total) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += row_sq[i];
  *total += s;
}

template <class T>
__global__ void negate_kernel(Mat<T> a) {
  PYMDBN_GRID_STRIDE(e, a.rows * a.cols) {
    const index_t i = e / a.cols, j = e - i * a.cols;
    a(i, j) = -a(i, j);
  }
}

// The last phn without a draw: negation is exact, so storing -p here equals the CPU's
// separate negation pass.
template <class T>
struct NegClippedSigmoid {
  T c;
  __device__ T operator()(T z) const { return -clipped_sigmoid(z, c); }
};

template <class T>
__global__ void gather_rows_kernel(CMat<T> x, const std::int64_t* order, Mat<T> out) {
  PYMDBN_GRID_STRIDE(e, out.rows * out.cols) {
    const index_t i = e / out.cols, j = e - i * out.cols;
    out(i, j) = x(order[i], j);
  }
}

// The apply step's element-wise part, one launch over the nh * nv weights, then the nv
// visible and nh hidden biases (all independent; the sparsity pull of weight row j is
// recomputed from qhat[j] with the CPU's expression, so it is the same number). The CPU
// updates the biases and computes the pull on its main thread, without FTZ, and the
// weights under FTZ: hence the *_rn forms for the former only.
template <class T>
__global__ void update_kernel(RBMState<T> s, const T* sums, T lr, T mom, T decay, bool sparse,
                              T cost, T target) {
  const index_t nv = s.w.cols, nh = s.w.rows, nw = nh * nv;
  const T *vbar = sums, *vneg = sums + nv, *qhat = sums + 2 * nv, *hneg = qhat + nh;
  const auto pull = [&](index_t j) {
    return sparse ? mul_rn(cost, sub_rn(target, qhat[j])) : T(0);
  };
  PYMDBN_GRID_STRIDE(e, nw + nv + nh) {
    if (e < nw) {
      const index_t j = e / nv, i = e - j * nv;
      const T pj = mul_rn(lr, pull(j));
      T& vw = s.v_w(j, i);
      T& wj = s.w(j, i);
      const T vij = flush_denormal(vw + pj * vbar[i] - decay * wj);
      vw = vij;
      wj += vij;
    } else if (e < nw + nv) {
      const index_t i = e - nw;
      const T vb = flush_denormal(
          add_rn(mul_rn(mom, s.v_b_visible[i]), mul_rn(lr, sub_rn(vbar[i], vneg[i]))));
      s.v_b_visible[i] = vb;
      s.b_visible[i] = add_rn(s.b_visible[i], vb);
    } else {
      const index_t j = e - nw - nv;
      const T vb = flush_denormal(add_rn(mul_rn(mom, s.v_b_hidden[j]),
                                         mul_rn(lr, add_rn(sub_rn(qhat[j], hneg[j]), pull(j)))));
      s.v_b_hidden[j] = vb;
      s.b_hidden[j] = add_rn(s.b_hidden[j], vb);
    }
  }
}

// The gradient step's workspace for up to `rows` rows, allocated once per call.
template <class T>
struct Workspace {
  Buffer<T> vm, h0, vr;
  Buffer<double> row_sq;
  Workspace(index_t rows, index_t nv, index_t nh, bool persistent)
      : vm(rows * nv), h0(rows * nh), vr(persistent ? rows * nv : 0), row_sq(rows) {}
};

// *err += sum over rows (in order) of the row's squared error of mean against v0.
template <class T>
void add_error(CMat<T> v0, CMat<T> mean, double* row_sq, double* err) {
  if (v0.rows == 0) return;
  launch(v0.rows * kWarp, row_sq_kernel<T>, v0, mean, row_sq);
  add_rows_kernel<<<1, 1, 0, stream()>>>(row_sq, v0.rows, err);
  PYMDBN_CUDA_LAUNCHED();
}

// cd_gradient's work, adding the batch's squared error to the device double *err.
template <class T>
void gradient(CMat<T> v0, CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, Mat<T> chain,
              const CDConfig<T>& cfg, std::uint64_t step, std::uint64_t row_offset, Mat<T> h,
              Mat<T> v, Workspace<T>& ws, double* err) {
  const index_t nv = w.cols, nh = w.rows, b = v0.rows;
  Mat<T> v0_out = v.top(b), vs = v.bottom(b), ph0 = h.top(b), phn = h.bottom(b);
  if (v0_out.data != v0.data && b > 0 && nv > 0)
    PYMDBN_CUDA_CHECK(cudaMemcpy2DAsync(v0_out.data, sizeof(T) * std::size_t(v0_out.ld),
                                        v0.data, sizeof(T) * std::size_t(v0.ld),
                                        sizeof(T) * std::size_t(nv), std::size_t(b),
                                        cudaMemcpyDeviceToDevice, stream()));
  Mat<T> vm(ws.vm.get(), b, nv), h0(ws.h0.get(), b, nh);
  const std::uint64_t base = step * 256u;
  auto rng = [&](std::uint64_t j) { return CounterRNG{cfg.seed, base + j, row_offset}; };

  // Positive phase; h0 starts the chain for CD and gives the reconstruction error.
  gibbs_hidden<T>(v0, w, b_hidden, cfg.clip, rng(0), ph0, h0);
  Mat<T> hc = cfg.persistent ? chain.top(b) : h0;
  if (cfg.persistent) {
    Mat<T> vr(ws.vr.get(), b, nv);
    if (cfg.visible == Visible::Gaussian)
      affine<T>(h0, w, false, b_visible, vr);
    else
      affine_sigmoid<T>(h0, w, false, b_visible, cfg.clip, vr);
    add_error<T>(v0, vr, ws.row_sq.get(), err);
  }

  // Negative phase: k alternating half-steps; hidden statistics use probabilities.
  for (int t = 0; t < cfg.k; ++t) {
    gibbs_visible<T>(hc, w, b_visible, cfg.visible, cfg.clip, rng(1 + 2 * t), vm, vs);
    if (t == 0 && !cfg.persistent) add_error<T>(v0, vm, ws.row_sq.get(), err);
    if (t + 1 < cfg.k || cfg.persistent)
      gibbs_hidden<T>(vs, w, b_hidden, cfg.clip, rng(2 + 2 * t), phn, hc);
    else
      affine_map<T>(vs, w, true, b_hidden, phn, NegClippedSigmoid<T>{clip_bound(cfg.clip)});
  }
  // Otherwise phn was stored negated above.
  if (cfg.persistent || cfg.k <= 0) launch(phn.rows * phn.cols, negate_kernel<T>, phn);
}

// cd_apply's work; sums is workspace of 2 (nv + nh) entries.
template <class T>
void apply(CMat<T> h, CMat<T> v, RBMState<T> s, const CDConfig<T>& cfg, T* sums) {
  const index_t nv = s.w.cols, nh = s.w.rows, b = h.rows / 2;
  const T lr = cfg.learning_rate, mom = cfg.momentum, inv_b = T(1) / T(b);
  T *vbar = sums, *vneg = sums + nv, *qhat = sums + 2 * nv, *hneg = qhat + nh;
  column_sums<T>(v.top(b), inv_b, vbar);
  column_sums<T>(v.bottom(b), inv_b, vneg);
  column_sums<T>(h.top(b), inv_b, qhat);
  // The mean of phn from -phn: exact, as on the CPU (see cpu/cd_epoch.cpp).
  column_sums<T>(h.bottom(b), -inv_b, hneg);
  gemm<T>(true, false, lr * inv_b, h, v, mom, s.v_w);
  launch(nh * nv + nv + nh, update_kernel<T>, s, static_cast<const T*>(sums), lr, mom,
         lr * cfg.weight_decay, cfg.sparsity_cost > T(0), cfg.sparsity_cost, cfg.sparsity_target);
}

}  // namespace

template <class T>
double cd_gradient(CMat<T> v0, CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, Mat<T> chain,
                   const CDConfig<T>& cfg, std::uint64_t step, std::uint64_t row_offset,
                   Mat<T> h, Mat<T> v) {
  Workspace<T> ws(v0.rows, w.cols, w.rows, cfg.persistent);
  Buffer<double> err(1);
  PYMDBN_CUDA_CHECK(cudaMemsetAsync(err.get(), 0, sizeof(double), stream()));
  gradient<T>(v0, w, b_visible, b_hidden, chain, cfg, step, row_offset, h, v, ws, err.get());
  double sq = 0;
  copy_to_host(err.get(), &sq, sizeof(double));
  return sq;
}

template <class T>
void cd_apply(CMat<T> h, CMat<T> v, RBMState<T> s, const CDConfig<T>& cfg) {
  Buffer<T> sums(2 * (s.w.cols + s.w.rows));
  apply<T>(h, v, s, cfg, sums.get());
}

template <class T>
EpochStats cd_epoch(CMat<T> x, const std::int64_t* order, std::int64_t n, std::int64_t batch_size,
                    RBMState<T> s, const CDConfig<T>& cfg, std::uint64_t first_step) {
  if (batch_size < 1) throw std::invalid_argument("cd_epoch: batch_size must be >= 1");
  EpochStats stats;
  if (n <= 0) return stats;
  const index_t nv = s.w.cols, nh = s.w.rows, B = batch_size < n ? batch_size : n;
  Buffer<std::int64_t> ord(n);
  PYMDBN_CUDA_CHECK(cudaMemcpyAsync(ord.get(), order, sizeof(std::int64_t) * std::size_t(n),
                                    cudaMemcpyHostToDevice, stream()));
  Buffer<T> buf_v(2 * B * nv), buf_h(2 * B * nh), sums(2 * (nv + nh));
  Workspace<T> ws(B, nv, nh, cfg.persistent);
  Buffer<double> err(1);
  PYMDBN_CUDA_CHECK(cudaMemsetAsync(err.get(), 0, sizeof(double), stream()));
  for (index_t start = 0, step = 0; start < n; start += B, ++step) {
    const index_t b = B < n - start ? B : n - start;
    Mat<T> v(buf_v.get(), 2 * b, nv), h(buf_h.get(), 2 * b, nh), v0 = v.top(b);
    // The batch is gathered straight into v's top half, where the gradient keeps it.
    launch(b * nv, gather_rows_kernel<T>, x, static_cast<const std::int64_t*>(ord.get() + start),
           v0);
    gradient<T>(v0, s.w, s.b_visible, s.b_hidden, s.chain, cfg, first_step + std::uint64_t(step),
                0, h, v, ws, err.get());
    apply<T>(h, v, s, cfg, sums.get());
    ++stats.n_batches;
  }
  copy_to_host(err.get(), &stats.sum_squared_error, sizeof(double));
  return stats;
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_CD)

}  // namespace pymdbn::cuda
