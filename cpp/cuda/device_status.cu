// Whether this process can run the CUDA backend, and why not: the driver, a device, and its
// compute capability.
#include <cuda_runtime.h>

#include <string>

#include "cuda_mlp.hpp"

namespace fusedmlp::cuda {

DeviceStatus device_status() {
    DeviceStatus s;
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status == cudaErrorInsufficientDriver) {
        cudaGetLastError();
        s.reason = "no NVIDIA driver found, or it is older than the CUDA runtime fusedmlp was built with (" +
                   std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10) + ")";
        return s;
    }
    if (status != cudaSuccess) {
        cudaGetLastError();
        s.reason = std::string("no usable CUDA device (") + cudaGetErrorName(status) + ": " +
                   cudaGetErrorString(status) + ")";
        return s;
    }
    if (count == 0) {
        s.reason = "no CUDA device found";
        return s;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        cudaGetLastError();
        s.reason = "CUDA device 0 could not be queried";
        return s;
    }
    if (prop.major < 8) {
        s.reason = std::string("CUDA device ") + prop.name + " has compute capability " + std::to_string(prop.major) +
                   "." + std::to_string(prop.minor) + "; fusedmlp's CUDA kernels need 8.0 or newer";
        return s;
    }
    s.ok = true;
    s.name = prop.name;
    s.arch = prop.major * 100 + prop.minor * 10;
    return s;
}

}  // namespace fusedmlp::cuda
