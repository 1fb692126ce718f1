// Thread-block clusters (sm_90 and later): the blocks of one cluster run at the same time on
// neighbouring SMs and read each other's shared memory. FUSEDMLP_CUDA_CLUSTERS is defined where
// the device code may use them; the host launches a cluster only on a device that has them.
// The emulator (emulation/cuda_runtime.h) defines its own versions of everything here.
#pragma once

#include <cuda_runtime.h>

#if !defined(FUSEDMLP_CUDA_EMULATED)

// Shared memory that other blocks of the cluster read (cluster_peer); the emulator gives each
// of a cluster's blocks its own copy.
#define FUSEDMLP_CLUSTER_SHARED(T, name, n) __shared__ __align__(16) T name[n]

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#include <cooperative_groups.h>
#define FUSEDMLP_CUDA_CLUSTERS 1

namespace fusedmlp::cuda {

// A barrier of every thread of the cluster: shared-memory writes before it are visible to
// every block of the cluster after it.
__device__ __forceinline__ void cluster_sync() { cooperative_groups::this_cluster().sync(); }

__device__ __forceinline__ unsigned cluster_rank() { return cooperative_groups::this_cluster().block_rank(); }

// The address p (in this block's shared memory, static or dynamic) in the shared memory of
// block `rank`; T may be const.
template <class T>
__device__ __forceinline__ T* cluster_peer(T* p, unsigned rank) {
    return cooperative_groups::this_cluster().map_shared_rank(p, static_cast<int>(rank));
}

}  // namespace fusedmlp::cuda
#endif

#endif
