// Programmatic dependent launch (sm_90 and later): a kernel launched with it may be scheduled
// while the previous kernel of its stream is still running, so that its launch and the
// scheduling of its blocks overlap that kernel's last blocks instead of following them. Such a
// kernel must not touch memory the previous kernel writes before await_prior_grid returns.
// Launched without the attribute, or built for an older GPU, both device calls do nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace fusedmlp::cuda {

// Returns once the stream's previous kernel has completed and its writes are visible.
__device__ __forceinline__ void await_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the stream's next kernel be scheduled once every block of this one has called it (it
// then waits in await_prior_grid until this kernel completes).
__device__ __forceinline__ void release_dependent_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when
// `dependent`. A launch error surfaces through cudaGetLastError, as with <<<...>>>.
template <class... Params, class... Args>
void launch_kernel(bool dependent, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem,
                   cudaStream_t stream, Args&&... args) {
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = dependent ? 1 : 0;
    cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace fusedmlp::cuda
