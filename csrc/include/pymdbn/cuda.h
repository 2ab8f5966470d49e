// The CUDA backend's device functions beside its ops (ops.h declares the ops in
// pymdbn::cuda): plain C++, no CUDA header, so the bindings compile without nvcc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pymdbn::cuda {

// Devices visible here; 0 (never an error) without a driver or a GPU.
int device_count();
// Why device_count() is 0, or "" when it is not.
std::string unavailable_reason();
// "NVIDIA H200 (sm_90, 139 GiB)" for the current device.
std::string device_name();
int runtime_version();
int driver_version();
int cublas_version();

// The stream the ops run on (a cudaStream_t as an integer; 0: the legacy default stream).
void set_stream(std::uintptr_t stream);
std::uintptr_t get_stream();
void synchronize();

// The operand precision of float32 products for ops called from this host thread: false
// float32 (no TF32), true bfloat16 (cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF: operands
// rounded to bfloat16 on tensor cores, float32 accumulation and output).
void set_bfloat16_products(bool on);
bool bfloat16_products();

// Host <-> device copies on the ops' stream; the host side waits for the copy.
void copy_to_host(const void* src, void* dst, std::size_t bytes);

}  // namespace pymdbn::cuda
