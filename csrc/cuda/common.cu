#include <cstdio>
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace pymdbn::cuda {

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so the next call starts clean
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) +
                           " (" + cudaGetErrorString(err) + ")");
}

void check(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuBLAS error in ") + what + ": " +
                           cublasGetStatusName(st) + " (" + cublasGetStatusString(st) + ")");
}

namespace {

cudaStream_t g_stream = nullptr;  // the legacy default stream until set_stream

struct Handle {
  cublasHandle_t h = nullptr;
  int device = -1;
  ~Handle() {
    // At process exit the driver may already be gone: errors are ignored here.
    if (h) cublasDestroy(h);
  }
};

}  // namespace

cudaStream_t stream() { return g_stream; }

cublasHandle_t blas() {
  // One handle per host thread and device (cuBLAS handles are not thread-safe to share).
  thread_local Handle handle;
  int dev = 0;
  PYMDBN_CUDA_CHECK(cudaGetDevice(&dev));
  if (!handle.h || handle.device != dev) {
    if (handle.h) cublasDestroy(handle.h);
    handle.h = nullptr;
    PYMDBN_CUDA_CHECK(cublasCreate(&handle.h));
    handle.device = dev;
    // No TF32 for float32 products: results keep float32's precision, as on the CPU.
    PYMDBN_CUDA_CHECK(cublasSetMathMode(handle.h, CUBLAS_DEFAULT_MATH));
  }
  PYMDBN_CUDA_CHECK(cublasSetStream(handle.h, g_stream));
  return handle.h;
}

void set_stream(std::uintptr_t s) { g_stream = reinterpret_cast<cudaStream_t>(s); }
std::uintptr_t get_stream() { return reinterpret_cast<std::uintptr_t>(g_stream); }
void synchronize() { PYMDBN_CUDA_CHECK(cudaStreamSynchronize(g_stream)); }

void copy_to_host(const void* src, void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  PYMDBN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
  PYMDBN_CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  }
  return n > 0 ? "" : "no CUDA device is visible";
}

std::string device_name() {
  int dev = 0;
  PYMDBN_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  PYMDBN_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  char buf[320];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor,
                double(p.totalGlobalMem) / double(1ull << 30));
  return buf;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return v;
}

int cublas_version() {
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  return major * 10000 + minor * 100 + patch;
}

// --- GEMM ------------------------------------------------------------------------------

namespace {

cublasStatus_t call(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const float* alpha, const float* a, int lda, const float* b, int ldb,
                    const float* beta, float* c, int ldc) {
  return cublasSgemm(blas(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t call(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const double* alpha, const double* a, int lda, const double* b, int ldb,
                    const double* beta, double* c, int ldc) {
  return cublasDgemm(blas(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

thread_local bool bf16_products = false;

// bfloat16 products: cublasGemmEx with float32 storage and a compute type that lets the
// library round the operands to bfloat16 for the tensor cores.
template <class T>
cublasStatus_t call_bf16(cublasOperation_t, cublasOperation_t, int, int, int, const T*,
                         const T*, int, const T*, int, const T*, T*, int) {
  return CUBLAS_STATUS_NOT_SUPPORTED;  // float64 products keep their precision
}
template <>
cublasStatus_t call_bf16<float>(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                const float* alpha, const float* a, int lda, const float* b,
                                int ldb, const float* beta, float* c, int ldc) {
  return cublasGemmEx(blas(), ta, tb, m, n, k, alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb,
                      beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF,
                      CUBLAS_GEMM_DEFAULT);
}

int as_int(index_t v, const char* what) {
  if (v > index_t(INT32_MAX)) throw std::invalid_argument(std::string(what) + " exceeds 2^31 - 1");
  return int(v);
}

// C = beta C for an empty product, as the CPU's gemm (on its main thread: no FTZ); beta
// = 0 writes zeros, whatever C held (NaN included).
template <class T>
__global__ void scale_kernel(Mat<T> c, T beta) {
  PYMDBN_GRID_STRIDE(e, c.rows * c.cols) {
    const index_t i = e / c.cols, j = e - i * c.cols;
    c(i, j) = beta == T(0) ? T(0) : mul_rn(beta, c(i, j));
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c) {
  if (c.rows == 0 || c.cols == 0) return;
  const index_t k = trans_a ? a.rows : a.cols;
  // k = 0: cuBLAS is not asked (what it does there is not documented); callers need no
  // wrapper, and an uninitialised workspace C still comes out as the product.
  if (k == 0) {
    launch(c.rows * c.cols, scale_kernel<T>, c, beta);
    return;
  }
  // Row-major C (m x n) is column-major C^T: C^T = op(B)^T op(A)^T, and a row-major
  // matrix read column-major is its transpose, so the operands swap and keep their flags.
  const cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m_ = as_int(c.cols, "gemm n"), n_ = as_int(c.rows, "gemm m"), k_ = as_int(k, "gemm k"),
            ldb = as_int(b.ld > 0 ? b.ld : 1, "ldb"), lda = as_int(a.ld > 0 ? a.ld : 1, "lda"),
            ldc = as_int(c.ld, "ldc");
  // bfloat16 operands from two rows of C on: one row stays float32, as on the CPU.
  if (bf16_products && std::is_same<T, float>::value && c.rows > 1) {
    PYMDBN_CUDA_CHECK(call_bf16<T>(ob, oa, m_, n_, k_, &alpha, b.data, ldb, a.data, lda, &beta,
                                   c.data, ldc));
    return;
  }
  PYMDBN_CUDA_CHECK(call(ob, oa, m_, n_, k_, &alpha, b.data, ldb, a.data, lda, &beta, c.data, ldc));
}

void set_bfloat16_products(bool on) { bf16_products = on; }
bool bfloat16_products() { return bf16_products; }

// --- column sums ---------------------------------------------------------------------

namespace {

template <class T>
__global__ void column_sums_kernel(CMat<T> a, T scale, T* sums) {
  PYMDBN_GRID_STRIDE(j, a.cols) {
    T acc = 0;
    for (index_t i = 0; i < a.rows; ++i) acc = add_rn(acc, a(i, j));
    sums[j] = mul_rn(scale, acc);
  }
}

}  // namespace

template <class T>
void column_sums(CMat<T> a, T scale, T* sums) {
  launch(a.cols, column_sums_kernel<T>, a, scale, sums);
}

#define PYMDBN_INSTANTIATE(T)                                                  \
  template void gemm<T>(bool, bool, T, CMat<T>, CMat<T>, T, Mat<T>);          \
  template void column_sums<T>(CMat<T>, T, T*);
PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE)
#undef PYMDBN_INSTANTIATE

}  // namespace pymdbn::cuda
