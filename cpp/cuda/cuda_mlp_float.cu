// CudaMlp<float> and the kernels it launches (see cuda_mlp_impl.cuh), and the float GEMM tiles
// FUSEDMLP_CUDA_TILE can force.
#include "cuda_mlp_impl.cuh"

template class fusedmlp::cuda::CudaMlp<float>;

std::vector<std::string> fusedmlp::cuda::forceable_gemm_tiles() {
    const DeviceStatus device = device_status();
    std::vector<std::string> names;
    for (const ForceableTile& t : kForceableTiles)
        if (tile_has_code(t.id, device)) names.push_back(t.name);
    return names;
}
