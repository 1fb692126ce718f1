// CudaMlp: device memory, the order of launches for a step and an epoch, and the CUDA graph
// that replays an epoch's launches with one host call. Included by one translation unit per
// scalar type (cuda_mlp_float.cu, cuda_mlp_double.cu), so that the build compiles them in
// parallel: as one unit it took about two minutes on one core of a 16-core GPU machine.
// Everything here besides CudaMlp<T> has internal linkage, a copy per unit.
#pragma once

#include "cuda_mlp.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "fused.cuh"
#include "fused_cluster.cuh"
#include "gemm.cuh"
#include "loss.cuh"
#include "sgd.cuh"
#include "skinny.cuh"

namespace fusedmlp::cuda {

namespace {

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        cudaGetLastError();  // clear a sticky launch error so later calls report their own
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
    }
}

// Where a Buffer's memory comes from: the device, or page-locked host memory, from and to which
// copies run asynchronously (an epoch's uploads do not wait for the host to stage them, and its
// downloads do not make the host wait for the epoch).
struct DeviceMemory {
    static constexpr const char* kAllocator = "cudaMalloc";
    static cudaError_t allocate(void** p, std::size_t bytes) { return cudaMalloc(p, bytes); }
    static void release(void* p) { cudaFree(p); }
};
struct PinnedMemory {
    static constexpr const char* kAllocator = "cudaMallocHost";
    static cudaError_t allocate(void** p, std::size_t bytes) { return cudaMallocHost(p, bytes); }
    static void release(void* p) { cudaFreeHost(p); }
};

// An allocation that only grows; grow() says whether the address changed.
template <class V, class Memory>
class Buffer {
public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() {
        if (ptr_ != nullptr) Memory::release(ptr_);
    }
    bool grow(std::size_t count) {
        if (count <= size_) return false;
        if (ptr_ != nullptr) Memory::release(ptr_);
        ptr_ = nullptr;
        size_ = 0;
        void* p = nullptr;
        check(Memory::allocate(&p, std::max<std::size_t>(count, 1) * sizeof(V)), Memory::kAllocator);
        ptr_ = static_cast<V*>(p);
        size_ = count;
        return true;
    }
    V* get() const { return ptr_; }
    std::size_t size() const { return size_; }

private:
    V* ptr_ = nullptr;
    std::size_t size_ = 0;
};

template <class V>
using DeviceArray = Buffer<V, DeviceMemory>;
template <class V>
using PinnedArray = Buffer<V, PinnedMemory>;

// Narrows an epoch's order to the device's int indices in one pass, and says whether every
// index lies in [0, n). An index outside makes i or (n - 1) - i negative as a 64-bit value:
// one OR per index instead of a branch, so the loop vectorizes. 42 us for 262,144 indices
// here, against 115 us for a check and then a copy into a new vector (2026-11-26).
bool narrow_order(const std::int64_t* order, std::size_t length, std::size_t n, int* out) {
    const std::uint64_t last = static_cast<std::uint64_t>(n) - 1;
    std::uint64_t outside = 0;
    for (std::size_t i = 0; i < length; ++i) {
        const std::uint64_t index = static_cast<std::uint64_t>(order[i]);
        outside |= index | (last - index);
        out[i] = static_cast<int>(order[i]);
    }
    return (outside >> 63) == 0;
}

// Launches past this many nodes per epoch are queued directly: instantiating a bigger graph
// costs more than it saves.
constexpr std::size_t kMaxGraphNodes = 40000;
// Largest partial-gradient buffer of the fused path (elements); beyond it the tiled path runs.
constexpr std::size_t kMaxFusedPartial = std::size_t(1) << 26;
constexpr int kLossWarpsPerBlock = kReduceThreads / 32;  // loss_rows_kernel's blocks also reduce

bool graphs_enabled() {
    const char* value = std::getenv("FUSEDMLP_CUDA_GRAPHS");
    return value == nullptr || std::strcmp(value, "0") != 0;
}

int sm_count() {
    int device = 0, count = 1;
    if (cudaGetDevice(&device) == cudaSuccess)
        cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
    return std::max(count, 1);
}

// The GEMM tile shapes (gemm.cuh). float: 8 x 8 outputs per thread, in 128 x 128 blocks of 256
// threads (the most reuse per load: big products) or in 64 x 64 blocks of 64 threads (four
// times the blocks: mid-size products); or 4 x 4 per thread in 64 x 64 blocks of 256 threads
// (more warps per block where there are few blocks). double: 4 x 4 per thread (8 x 8 doubles
// would spill). The last argument is the blocks that must fit on an SM, which bounds the
// registers per thread (each of an SM's four schedulers has 16384 registers for its warps: at
// most 128, 168 and 80 per thread for the float tiles, 128 for double).
using TileF128 = GemmTile<float, 128, 128, 8, 8, 8, 2>;
using TileF64 = GemmTile<float, 64, 64, 8, 8, 8, 6>;
using TileF64Warps = GemmTile<float, 64, 64, 16, 4, 4, 3>;
using TileD64 = GemmTile<double, 64, 64, 8, 4, 4, 2>;
// Candidates for the big products, run only when forced (FUSEDMLP_CUDA_TILE=128t128 or 128x256)
// until timed on a GPU: 8 x 16 outputs per thread (twice the multiply-adds per shared-memory
// read and per barrier), in 128 x 128 blocks of 128 threads, two per SM (the shape of cuBLAS's
// SIMT sgemm, 64 x 64 outputs per warp), or in 128 x 256 blocks of 256 threads, one per SM.
// Up to 255 registers per thread, no spills (ptxas, sm_90).
// Compiled for sm_90 alone (GemmTile::kFirstArch), and only in builds that ask for them (CMake's
// FUSEDMLP_CUDA_TRIAL_TILES, which bench/gpu_check.sh turns on): only an H100 times them, and
// they were a fifth of the CUDA module's build time for kernels a default plan never runs.
// Elsewhere their kernels trap and gemm_override ignores them.
#if defined(FUSEDMLP_CUDA_TRIAL_TILES) && FUSEDMLP_CUDA_TRIAL_TILES
constexpr int kTrialTileArch = 900;
#else
constexpr int kTrialTileArch = kNoArch;
#endif
using TileF128Threads128 = GemmTile<float, 128, 128, 8, 8, 16, 2, kTrialTileArch>;
using TileF128x256 = GemmTile<float, 128, 256, 8, 8, 16, 1, kTrialTileArch>;

// The float tiles the planner chooses from, then those it takes only when forced, then the
// double one.
enum GemmTileId : int {
    kTileF128,
    kTileF64,
    kTileF64Warps,
    kTileF128Threads128,
    kTileF128x256,
    kTileD64,
    kTileCount
};
constexpr int kLastPlannedFloatTile = kTileF64Warps;

// The names by which FUSEDMLP_CUDA_TILE forces a float tile.
struct ForceableTile {
    const char* name;
    GemmTileId id;
};
constexpr ForceableTile kForceableTiles[] = {{"128", kTileF128},
                                             {"64", kTileF64},
                                             {"64w", kTileF64Warps},
                                             {"128t128", kTileF128Threads128},
                                             {"128x256", kTileF128x256}};

// What the planner assumes of each tile shape: its edges and K step, warps per block, blocks
// resident per SM, and its throughput per SM relative to TileF128 once the SM has enough warps
// (64 x 64 blocks load twice as much per multiply-add from L2; 4 x 4 per thread spends about
// one issue slot in five on shared-memory reads and tile staging instead of multiply-adds).
// Estimates from the kernels' structure, not measurements.
// cluster_sum: whether its splits may be summed across a cluster (GemmTile::kClusterSum).
// first_arch: the oldest architecture with code for it (GemmTile::kFirstArch, as __CUDA_ARCH__).
struct TileModel {
    int bm, bn, bk, warps, resident;
    double efficiency;
    bool cluster_sum;
    int first_arch;
};
constexpr TileModel kTileModels[kTileCount] = {
    {128, 128, 8, 8, 2, 1.0, TileF128::kClusterSum, TileF128::kFirstArch},
    {64, 64, 8, 2, 6, 0.9, TileF64::kClusterSum, TileF64::kFirstArch},
    {64, 64, 16, 8, 3, 0.75, TileF64Warps::kClusterSum, TileF64Warps::kFirstArch},
    {128, 128, 8, 4, 2, 1.0, TileF128Threads128::kClusterSum, TileF128Threads128::kFirstArch},
    {128, 256, 8, 8, 1, 1.0, TileF128x256::kClusterSum, TileF128x256::kFirstArch},
    {64, 64, 8, 8, 2, 1.0, TileD64::kClusterSum, TileD64::kFirstArch},
};

// Whether this build has code for a tile (a GemmTileId) on `device`: gemm_kernel traps elsewhere,
// so FUSEDMLP_CUDA_TILE forces only such a tile.
bool tile_has_code(int tile, const DeviceStatus& device) {
    return device.ok && device.arch >= kTileModels[tile].first_arch;
}

// FUSEDMLP_CUDA_FUSED_ROWS=8, 16 or 32 forces the fused kernel's tile rows for batches of more
// than one tile (for tests: the choice otherwise depends on the GPU's SM count); else 0.
int forced_fused_rows() {
    const char* value = std::getenv("FUSEDMLP_CUDA_FUSED_ROWS");
    return value == nullptr ? 0 : std::atoi(value);
}

// FUSEDMLP_CUDA_EPOCH_THREADS=256 or 512: the threads of fused_epoch_kernel's block (tuning and
// tests); else kDefaultEpochThreads. In float: double's block is 256 (kWideFusedThreads). 512
// measured faster on an H100 (tiny, 32-64-64-4 batch 32: 1.594M against 1.457M samples/s in one
// session): the kernel waits on latency with 8 warps on its one SM, and 16 hide more of it.
constexpr int kDefaultEpochThreads = 512;
int epoch_threads_setting() {
    const char* value = std::getenv("FUSEDMLP_CUDA_EPOCH_THREADS");
    const int threads = value == nullptr ? 0 : std::atoi(value);
    return threads == 256 || threads == 512 ? threads : kDefaultEpochThreads;
}

// FUSEDMLP_CUDA_CLUSTER_EPOCH=1: epochs whose batches span 2 to kPortableClusterBlocks fused
// tiles run as one fused_cluster_epoch_kernel launch on a thread-block cluster (compute
// capability 9.0 and later), instead of fused_mlp_kernel and fused_reduce_kernel per step;
// =2: batches of one tile too, when they span several of the smallest tile, instead of
// fused_epoch_kernel on one block (fewer rows per block, at the cost of two cluster barriers
// and a sum across blocks per step). Off until a GPU times it (written 2026-11-27 without one).
enum ClusterEpochMode : int { kClusterEpochOff, kClusterEpochManyTiles, kClusterEpochAnyBatch };
ClusterEpochMode cluster_epoch_setting() {
    const char* value = std::getenv("FUSEDMLP_CUDA_CLUSTER_EPOCH");
    if (value == nullptr) return kClusterEpochOff;
    if (std::strcmp(value, "1") == 0) return kClusterEpochManyTiles;
    if (std::strcmp(value, "2") == 0) return kClusterEpochAnyBatch;
    return kClusterEpochOff;
}

// FUSEDMLP_CUDA_WGRAD_STREAM=1: the tiled path's weight gradients (and updates) run on a second
// stream, each beside the next input gradient instead of after it: the two products of a layer
// need the same dZ and write different buffers (the update writes the step's other parameter
// buffer), so the backward pass becomes two chains that share the GPU, where each product
// alone leaves SMs idle (mid-size layers: mnist, wide). Each input gradient then writes its dZ
// over the Z it was computed from (element by element, Z read first), so that a weight gradient
// still reading one layer's dZ is not overwritten by the next. Off until a GPU times it
// (written 2026-11-27 without one).
bool wgrad_stream_setting() {
    const char* value = std::getenv("FUSEDMLP_CUDA_WGRAD_STREAM");
    return value != nullptr && std::strcmp(value, "1") == 0;
}

// FUSEDMLP_CUDA_STEP_THREADS=256 or 512: the threads of fused_mlp_kernel's block (tuning and
// tests); else kDefaultStepThreads. In float, as the epoch kernel's. 512 measured faster on an
// H100 (small, 64-128-128-10 batch 64: 2.047M against 1.844M samples/s in one session; narrow
// 34.2M against 33.8M): like the epoch kernel, it waits on latency, and 16 warps per SM hide
// more of it.
constexpr int kDefaultStepThreads = 512;
int step_threads_setting() {
    const char* value = std::getenv("FUSEDMLP_CUDA_STEP_THREADS");
    const int threads = value == nullptr ? 0 : std::atoi(value);
    return threads == 256 || threads == 512 ? threads : kDefaultStepThreads;
}

// Test and tuning hooks: FUSEDMLP_CUDA_TILE=128, 64, 64w, 128t128 or 128x256 forces one tile
// shape of the float GEMMs; FUSEDMLP_CUDA_SPLIT=s splits every product whose K allows it into (about) s ranges of
// K; FUSEDMLP_CUDA_PLAN_WARPS=w plans as if an SM needed w resident warps to run at full rate
// (the cost model's kSaturatingWarps, below); FUSEDMLP_CUDA_SPLIT_SUM=cluster adds the ranges
// of a split across a thread-block cluster where the tile and the device allow
// (gemm_kernel's cluster_sum), instead of in splitk_finish_kernel; FUSEDMLP_CUDA_SKINNY=1 takes
// input gradients of at most kSkinnyMaxK terms per sum (the output layer's) through
// skinny_input_grad_kernel instead of the tiled GEMM; FUSEDMLP_CUDA_PDL=1 launches every kernel
// of a per-step path (the GEMMs and their split sums, the loss, the fused step and its sum) as
// a programmatic dependent of the kernel before it (dependent_launch.cuh), on devices of compute
// capability 9.0 and later: off until a GPU times it (written 2026-11-27 without one).
struct GemmOverride {
    int tile = -1;   // a GemmTileId, -1: chosen per product
    int splits = 0;  // 0: chosen per product
    double saturating_warps = 0;  // 0: kSaturatingWarps
    int cluster_splits = 0;  // the most ranges added across a cluster; 0: none (splitk_finish_kernel)
    bool skinny = false;
    bool dependent_launch = false;  // FUSEDMLP_CUDA_PDL on a device that has it
};

// A launch of `grid` with smem bytes of dynamic shared memory per block: in clusters of all its
// blocks along z (the z blocks of one output tile, or the blocks of fused_cluster_epoch_kernel)
// where `cluster`, as a programmatic dependent of the stream's previous kernel where `dependent`.
struct KernelLaunch {
    cudaLaunchAttribute attributes[2]{};
    cudaLaunchConfig_t config{};
    KernelLaunch(dim3 grid, unsigned threads, cudaStream_t stream, std::size_t smem, bool cluster, bool dependent) {
        config.gridDim = grid;
        config.blockDim = dim3(threads);
        config.dynamicSmemBytes = smem;
        config.stream = stream;
        config.attrs = attributes;  // hence no copies
        config.numAttrs = 0;
        if (cluster) {
            cudaLaunchAttribute& a = attributes[config.numAttrs++];
            a.id = cudaLaunchAttributeClusterDimension;
            a.val.clusterDim.x = 1;
            a.val.clusterDim.y = 1;
            a.val.clusterDim.z = grid.z;
        }
        if (dependent) {
            cudaLaunchAttribute& a = attributes[config.numAttrs++];
            a.id = cudaLaunchAttributeProgrammaticStreamSerialization;
            a.val.programmaticStreamSerializationAllowed = 1;
        }
    }
    KernelLaunch(const KernelLaunch&) = delete;
    KernelLaunch& operator=(const KernelLaunch&) = delete;
};

struct ClusterLaunch : KernelLaunch {
    ClusterLaunch(dim3 grid, unsigned threads, cudaStream_t stream, std::size_t smem = 0, bool dependent = false)
        : KernelLaunch(grid, threads, stream, smem, true, dependent) {}
};

// kernel(args...) on `grid` blocks of `threads`: as a programmatic dependent of the stream's
// previous kernel where `dependent` (FUSEDMLP_CUDA_PDL), else as a plain <<< >>> launch, the
// default path's. Errors reach cudaGetLastError either way.
template <class... P, class... A>
void launch_step_kernel(bool dependent, void (*kernel)(P...), dim3 grid, unsigned threads, std::size_t smem,
                        cudaStream_t stream, const A&... args) {
    if (dependent) {
        const KernelLaunch launch(grid, threads, stream, smem, false, true);
        (void)cudaLaunchKernelEx(&launch.config, kernel, args...);
    } else {
        kernel<<<grid, threads, smem, stream>>>(args...);
    }
}

// The portable cluster size, and the largest one an H100 allows (on request, per kernel).
constexpr int kPortableClusterBlocks = 8;
constexpr int kLargestClusterBlocks = 16;

// Clusters of kLargestClusterBlocks blocks of a cluster-summing tile: allowed for each kind's
// kernel, and whether one fits the device at all (0 active clusters: it cannot be launched).
template <class Tile, int KIND>
bool largest_clusters_fit() {
    const auto kernel = gemm_kernel<Tile, KIND>;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    const ClusterLaunch launch(dim3(1, 1, kLargestClusterBlocks), Tile::kThreads, nullptr);
    int active = 0;
    if (cudaOccupancyMaxActiveClusters(&active, kernel, &launch.config) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return active > 0;
}

// The most blocks per cluster the GEMMs of a cluster-summing tile may use on `device`: 0 where
// it has no clusters.
template <class Tile>
int cluster_splits_available(const DeviceStatus& device) {
    if (!device.clusters()) return 0;
    const bool largest = largest_clusters_fit<Tile, kForward>() && largest_clusters_fit<Tile, kInputGrad>() &&
                         largest_clusters_fit<Tile, kWeightGrad>();
    return largest ? kLargestClusterBlocks : kPortableClusterBlocks;
}

// Of the tiles, only a float one sums a split across a cluster (GemmTile::kClusterSum):
// gemm_override<double> leaves cluster_splits at 0, and the double unit holds no float kernels.
template <class T>
GemmOverride gemm_override(const DeviceStatus& device) {
    GemmOverride o;
    if (const char* tile = std::getenv("FUSEDMLP_CUDA_TILE")) {
        for (const ForceableTile& t : kForceableTiles)
            if (std::strcmp(tile, t.name) == 0) o.tile = t.id;
        // A tile without code for this device: chosen per product instead.
        if (o.tile >= 0 && !tile_has_code(o.tile, device)) o.tile = -1;
    }
    if (const char* splits = std::getenv("FUSEDMLP_CUDA_SPLIT")) o.splits = std::max(0, std::atoi(splits));
    if (const char* warps = std::getenv("FUSEDMLP_CUDA_PLAN_WARPS")) o.saturating_warps = std::max(0, std::atoi(warps));
    if constexpr (std::is_same<T, float>::value)
        if (const char* sum = std::getenv("FUSEDMLP_CUDA_SPLIT_SUM"))
            if (std::strcmp(sum, "cluster") == 0) o.cluster_splits = cluster_splits_available<TileF64Warps>(device);
    if (const char* skinny = std::getenv("FUSEDMLP_CUDA_SKINNY")) o.skinny = std::strcmp(skinny, "1") == 0;
    if (const char* pdl = std::getenv("FUSEDMLP_CUDA_PDL"))
        o.dependent_launch = std::strcmp(pdl, "1") == 0 && device.arch >= 900;
    return o;
}

// The planner's cost model, in cycles of the busiest SM (for ranking plans, not a prediction):
// an SM runs at its full rate with kSaturatingWarps resident warps and proportionally slower
// with fewer; a block's K step takes at least kStepLatency (it waits for the tile prefetched
// during the previous step), which bounds blocks with little work per step and long K;
// splitting K costs one more launch plus writing and reading the partial sums.
// Measured on an H100: one 8-warp block per SM ran a forward product at a third of this model's
// rate with 8 (ncu), and planning with 16 made mnist 13% and wide 14% faster than with 8.
constexpr double kSaturatingWarps = 16;
constexpr double kStepLatency = 700;         // an L2 round trip, the shared-memory stores, the barrier
constexpr double kSplitLaunchCycles = 4000;  // about 2 us: one more kernel node and its ramp-up
constexpr double kSplitBytesPerCycle = 3000;  // device-wide L2 bandwidth, about 5.5 TB/s
// K ranges: multiples of kSplitAlign (whole vectors and BK tiles), at least kMinSplitK long
// (unless forced), at most kMaxSplits of them.
constexpr long long kSplitAlign = 16;
constexpr long long kMinSplitK = 64;
constexpr long long kMaxSplits = 32;

// Largest workspace of a split product (elements): four 128 x 128 tiles per SM.
long long split_limit(int sms) { return 4LL * sms * 128 * 128; }

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

struct GemmPlan {
    int tile = kTileF128;
    int splits = 1;
    int chunk = 0;  // K rows per range when split, else 0
    bool cluster_sum = false;  // the ranges added across a cluster, not by splitk_finish_kernel
};

// M x N outputs, of which the tiles cover tiled_rows x N (gemm_tiled_rows).
double plan_cycles(const TileModel& tile, long long M, long long tiled_rows, long long N, long long chunk,
                   long long splits, int sms, double fma_per_cycle, std::size_t element_bytes,
                   double saturating_warps) {
    const long long blocks = ceil_div(tiled_rows, tile.bm) * ceil_div(N, tile.bn) * splits;
    const long long per_sm = ceil_div(blocks, sms);
    const double warps = static_cast<double>(std::min<long long>(per_sm, tile.resident) * tile.warps);
    const double rate = fma_per_cycle * tile.efficiency * std::min(1.0, warps / saturating_warps);
    const double throughput = static_cast<double>(per_sm) * tile.bm * tile.bn * static_cast<double>(chunk) / rate;
    const double latency =
        static_cast<double>(ceil_div(per_sm, tile.resident) * ceil_div(chunk, tile.bk)) * kStepLatency;
    double cycles = std::max(throughput, latency);
    if (splits > 1)
        cycles += kSplitLaunchCycles + 2.0 * static_cast<double>(splits * M * N * element_bytes) / kSplitBytesPerCycle;
    return cycles;
}

// The tile shape and split along K of an M x N product of kind KIND summed over K: the cheapest
// plan by the cost model. Depends on the shape and the SM count only, so every run plans alike.
template <int KIND, class T>
GemmPlan plan_gemm(long long M, long long N, long long K, int sms, const GemmOverride& forced) {
    constexpr bool is_float = std::is_same<T, float>::value;
    const double fma_per_cycle = is_float ? 128 : 64;
    GemmPlan best;
    double best_cycles = 0;
    bool found = false;
    auto consider = [&](int tile, long long splits) {
        const long long chunk = splits > 1 ? ceil_div(ceil_div(K, splits), kSplitAlign) * kSplitAlign : K;
        const long long ranges = ceil_div(K, chunk);
        if (splits > 1 && ranges < 2) return false;
        const double cycles =
            plan_cycles(kTileModels[tile], M, gemm_tiled_rows<KIND>(static_cast<int>(M)), N, chunk, ranges, sms,
                        fma_per_cycle, sizeof(T),
                        forced.saturating_warps > 0 ? forced.saturating_warps : kSaturatingWarps);
        if (!found || cycles < best_cycles) {
            best = GemmPlan{tile, static_cast<int>(ranges), ranges > 1 ? static_cast<int>(chunk) : 0};
            best_cycles = cycles;
            found = true;
        }
        return true;
    };
    const long long max_splits = std::max(1LL, std::min(kMaxSplits, split_limit(sms) / std::max(M * N, 1LL)));
    int first = is_float ? kTileF128 : kTileD64, last = is_float ? kLastPlannedFloatTile : kTileD64;
    if (is_float && forced.tile >= 0) first = last = forced.tile;
    for (int tile = first; tile <= last; ++tile) {
        if (forced.splits > 0) {
            if (!consider(tile, std::min<long long>(forced.splits, max_splits))) consider(tile, 1);
            continue;
        }
        for (long long splits = 1; splits <= max_splits; ++splits)
            if (splits == 1 || ceil_div(K, splits) >= kMinSplitK) consider(tile, splits);
    }
    // The same plan either way: a cluster sum only replaces splitk_finish_kernel where it can.
    best.cluster_sum = best.splits > 1 && kTileModels[best.tile].cluster_sum && best.splits <= forced.cluster_splits;
    return best;
}

// Workspace enough for any split plan_gemm makes for at most M x N outputs summed over at most
// K (it never exceeds kMaxSplits ranges nor split_limit elements).
long long split_workspace_bound(long long M, long long N, long long K, int sms) {
    if (K <= kSplitAlign) return 0;
    return std::min(split_limit(sms), kMaxSplits * M * N);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <class Tile, int KIND>
void launch_tile(const GemmArgs<typename Tile::Scalar>& g, int splits, cudaStream_t stream, bool dependent) {
    const int rows = gemm_tiled_rows<KIND>(g.M);
    const dim3 grid((g.N + Tile::BN - 1) / Tile::BN, (rows + Tile::BM - 1) / Tile::BM, static_cast<unsigned>(splits));
    if (!g.cluster_sum) {
        launch_step_kernel(dependent, gemm_kernel<Tile, KIND>, grid, Tile::kThreads, 0, stream, g);
        return;
    }
    if (!Tile::kClusterSum) throw std::logic_error("fusedmlp: a cluster sum planned for a tile without one");
    const ClusterLaunch launch(grid, Tile::kThreads, stream, 0, dependent);
    // A failed launch is reported as those with <<< >>> are: by cudaGetLastError after the epoch's
    // launches (or by the end of a graph capture, which then falls back to plain launches); an
    // exception here would leave a capture open.
    (void)cudaLaunchKernelEx(&launch.config, gemm_kernel<Tile, KIND>, g);
}

// One product as planned: the GEMM, and the ordered sum of its K ranges when split into
// workspace (workspace_size elements, reserved with split_workspace_bound).
template <int KIND, class T>
void launch_gemm(GemmArgs<T> g, T* workspace, std::size_t workspace_size, cudaStream_t stream, int sms,
                 const GemmOverride& forced) {
    if constexpr (KIND == kInputGrad) {
        if (forced.skinny && g.K <= kSkinnyMaxK) {
            const long long per_block = static_cast<long long>(kSkinnyThreads) * kSkinnyRun;
            const int blocks = static_cast<int>((static_cast<long long>(g.M) * g.N + per_block - 1) / per_block);
            launch_step_kernel(forced.dependent_launch, skinny_input_grad_kernel<T>, dim3(blocks), kSkinnyThreads, 0,
                               stream, g);
            return;
        }
    }
    const GemmPlan plan = plan_gemm<KIND, T>(g.M, g.N, g.K, sms, forced);
    const long long count = static_cast<long long>(g.M) * g.N;
    const bool via_workspace = plan.splits > 1 && !plan.cluster_sum;
    if (via_workspace && static_cast<std::size_t>(plan.splits * count) > workspace_size)
        throw std::logic_error("fusedmlp: split GEMM workspace not reserved");
    g.k_chunk = plan.chunk;
    g.split_out = via_workspace ? workspace : nullptr;
    g.cluster_sum = plan.cluster_sum;
    constexpr int V = kVecWidth<T>;
    const bool rows_whole = g.N % V == 0;  // every output row starts on a vector boundary
    g.vec_a = g.lda % V == 0 && aligned16(g.a);
    if constexpr (KIND == kInputGrad) {
        g.vec_b = g.K % V == 0 && aligned16(g.b);
        g.vec_c = rows_whole && aligned16(g.z_in) && aligned16(g.h_in) && aligned16(g.c_out);
    } else {
        g.vec_b = rows_whole && aligned16(g.b);
        if constexpr (KIND == kForward)
            g.vec_c = rows_whole && aligned16(g.bias) && aligned16(g.z_out) && aligned16(g.h_out);
    }
    if (g.split_out != nullptr) g.vec_c = rows_whole && aligned16(g.split_out);
    if constexpr (std::is_same<T, float>::value) {
        switch (plan.tile) {
            case kTileF128: launch_tile<TileF128, KIND>(g, plan.splits, stream, forced.dependent_launch); break;
            case kTileF64: launch_tile<TileF64, KIND>(g, plan.splits, stream, forced.dependent_launch); break;
            case kTileF128Threads128: launch_tile<TileF128Threads128, KIND>(g, plan.splits, stream, forced.dependent_launch); break;
            case kTileF128x256: launch_tile<TileF128x256, KIND>(g, plan.splits, stream, forced.dependent_launch); break;
            default: launch_tile<TileF64Warps, KIND>(g, plan.splits, stream, forced.dependent_launch); break;
        }
    } else {
        launch_tile<TileD64, KIND>(g, plan.splits, stream, forced.dependent_launch);
    }
    if (via_workspace) {
        const long long per_block = 256LL * kFinishRun;
        const int blocks = static_cast<int>((count + per_block - 1) / per_block);
        launch_step_kernel(forced.dependent_launch, splitk_finish_kernel<KIND, T>, dim3(blocks), 256, 0, stream, g,
                           plan.splits);
    }
}

}  // namespace

template <class T>
struct CudaMlp<T>::Impl {
    std::vector<std::size_t> sizes;
    Activation hidden;
    Loss loss;
    int layers = 0;
    std::vector<long long> w_off, b_off;
    long long param_count = 0, weight_count = 0;
    int sms = 1;
    GemmOverride gemm_forced;  // test hooks of the GEMM planner
    int fused_rows = 0;        // forced fused tile rows, 0: chosen per batch size
    ClusterEpochMode cluster_epoch = kClusterEpochOff;  // FUSEDMLP_CUDA_CLUSTER_EPOCH on a device with clusters

    cudaStream_t stream = nullptr;
    // Parameters and momentum, double-buffered (see sgd.cuh); between calls buffer 0 is current.
    DeviceArray<T> params[2], momentum[2], grad;
    bool started = false;

    bool fused_ok = false, fused_on = false;
    FusedArgs<T> fused_layout;  // shapes; the layout and pointers are set per launch
    // Shared-memory layouts per tile size (kFusedTileRows): of the step kernel, and of the epoch
    // kernel without and with momentum, where they fit.
    static constexpr int kTileSizes = 3;
    // fused_epoch_kernel's block and fused_mlp_kernel's: kFusedThreads or kWideFusedThreads<T>
    int epoch_threads = kFusedThreads, step_threads = kFusedThreads;
    FusedLayout step_layout[kTileSizes], epoch_layout[kTileSizes][2];
    bool step_ok[kTileSizes] = {}, epoch_ok[kTileSizes][2] = {};
    // Whether fused_cluster_epoch_kernel may run a cluster of kPortableClusterBlocks blocks of
    // each tile's epoch layout without momentum (the kernel keeps the momentum in global memory).
    bool cluster_epoch_ok[kTileSizes] = {};

    // The training set, and the per-epoch uploads.
    DeviceArray<T> train_x, train_values;
    DeviceArray<int> train_labels;
    std::size_t train_rows = 0;
    DeviceArray<int> order;
    DeviceArray<double> lrs, step_loss;
    DeviceArray<int> control;  // [0] the diverged step, [1] whether the optimizer had started
    // Their host side: staged for the uploads, and where the epoch's results arrive.
    PinnedArray<int> order_host;
    PinnedArray<double> lrs_host, step_loss_host;
    PinnedArray<int> control_host;  // [0] and [1] as control's, uploaded; [2] the diverged step, downloaded

    // The steps of an epoch queued by begin_epoch and not yet waited for (0: none), and the
    // result of the last one.
    std::size_t in_flight_steps = 0;
    bool result_unread = false;
    EpochResult result;

    // Workspace of the tiled path for up to ws_rows rows, and of the fused path.
    std::size_t ws_rows = 0;
    std::vector<DeviceArray<T>> z, h;
    DeviceArray<T> dz[2];
    DeviceArray<T> split_ws;  // the K ranges of a split GEMM
    // FUSEDMLP_CUDA_WGRAD_STREAM: the weight gradients' stream, its split workspace, and the
    // events by which it waits for each dZ and the step's end waits for it.
    cudaStream_t wgrad_stream = nullptr;
    DeviceArray<T> wgrad_split_ws;
    cudaEvent_t dz_ready = nullptr, wgrad_done = nullptr;
    DeviceArray<double> row_loss;
    DeviceArray<unsigned> loss_blocks_done;  // loss_rows_kernel's count of finished blocks
    DeviceArray<T> partial;
    DeviceArray<double> partial_loss;
    // Inputs of loss_and_grad and forward, copied per call.
    DeviceArray<T> scratch_x, scratch_values, scratch_out;
    DeviceArray<int> scratch_labels;

    // The cached graph of one epoch, valid while the key and every buffer address are unchanged.
    cudaGraphExec_t graph = nullptr;
    std::vector<double> graph_key;
    unsigned long long generation = 0, graph_generation = ~0ULL;

    mutable std::mutex mutex;

    Impl(std::vector<std::size_t> layer_sizes, Activation a, Loss l)
        : sizes(std::move(layer_sizes)), hidden(a), loss(l), z(sizes.size() - 1), h(sizes.size() - 1) {
        const DeviceStatus status = device_status();
        if (!status.ok) throw std::runtime_error("backend='cuda': " + status.reason);
        layers = static_cast<int>(sizes.size()) - 1;
        for (int i = 0; i < layers; ++i) {
            w_off.push_back(weight_count);
            weight_count += static_cast<long long>(sizes[i] * sizes[i + 1]);
        }
        param_count = weight_count;
        for (int i = 0; i < layers; ++i) {
            b_off.push_back(param_count);
            param_count += static_cast<long long>(sizes[i + 1]);
        }
        sms = sm_count();
        gemm_forced = gemm_override<T>(status);
        fused_rows = forced_fused_rows();
        epoch_threads = std::min(epoch_threads_setting(), kWideFusedThreads<T>);
        step_threads = std::min(step_threads_setting(), kWideFusedThreads<T>);
        cluster_epoch = status.clusters() ? cluster_epoch_setting() : kClusterEpochOff;
        check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
        if (wgrad_stream_setting()) {
            check(cudaStreamCreateWithFlags(&wgrad_stream, cudaStreamNonBlocking), "cudaStreamCreate");
            check(cudaEventCreateWithFlags(&dz_ready, cudaEventDisableTiming), "cudaEventCreate");
            check(cudaEventCreateWithFlags(&wgrad_done, cudaEventDisableTiming), "cudaEventCreate");
        }
        for (int p = 0; p < 2; ++p) {
            params[p].grow(param_count);
            momentum[p].grow(param_count);
            check(cudaMemsetAsync(params[p].get(), 0, param_count * sizeof(T), stream), "cudaMemset");
            check(cudaMemsetAsync(momentum[p].get(), 0, param_count * sizeof(T), stream), "cudaMemset");
        }
        grad.grow(param_count);
        control.grow(2);
        control_host.grow(3);
        plan_fused();
        fused_on = fused_ok;
        check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }

    ~Impl() {
        // An epoch still in flight reads and writes buffers about to be freed.
        if (stream != nullptr) cudaStreamSynchronize(stream);
        if (graph != nullptr) cudaGraphExecDestroy(graph);
        if (dz_ready != nullptr) cudaEventDestroy(dz_ready);
        if (wgrad_done != nullptr) cudaEventDestroy(wgrad_done);
        if (wgrad_stream != nullptr) cudaStreamDestroy(wgrad_stream);
        if (stream != nullptr) cudaStreamDestroy(stream);
    }

    void plan_fused() {
        fused_ok = false;
        int device = 0, limit = 48 * 1024;
        check(cudaGetDevice(&device), "cudaGetDevice");
        check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
        // The kernels' static shared memory comes out of the same budget. The attribute belongs
        // to the kernel, shared by every network: always set it to the most the device allows,
        // never to this network's need.
        cudaFuncAttributes step_attributes{}, epoch_attributes{};
        // (Every sink's instantiation of fused_mlp_kernel has the same static shared memory.)
        check(cudaFuncGetAttributes(&step_attributes, fused_mlp_kernel<T, kSinkPartial, kFusedThreads>),
              "cudaFuncGetAttributes");
        if (epoch_threads == kWideFusedThreads<T>) {
            check(cudaFuncGetAttributes(&epoch_attributes, fused_epoch_kernel<T, kWideFusedThreads<T>>),
                  "cudaFuncGetAttributes");
        } else {
            check(cudaFuncGetAttributes(&epoch_attributes, fused_epoch_kernel<T, 256>), "cudaFuncGetAttributes");
        }
        const std::size_t step_limit = static_cast<std::size_t>(limit) - step_attributes.sharedSizeBytes;
        const std::size_t epoch_limit = static_cast<std::size_t>(limit) - epoch_attributes.sharedSizeBytes;
        for (int i = 0; i < kTileSizes; ++i) {
            const int rows = kFusedTileRows[i];
            // A block of step_threads where its larger scratch fits, else of kFusedThreads.
            step_ok[i] = plan_fused_layout(sizes, rows, step_threads, sizeof(T), step_limit, false, false, false,
                                           step_layout[i]) ||
                         plan_fused_layout(sizes, rows, kFusedThreads, sizeof(T), step_limit, false, false, false,
                                           step_layout[i]);
            for (int with_momentum = 0; with_momentum < 2; ++with_momentum)
                epoch_ok[i][with_momentum] =
                    plan_fused_layout(sizes, rows, epoch_threads, sizeof(T), epoch_limit, true, with_momentum == 1,
                                      true, epoch_layout[i][with_momentum]);
        }
        // Eligible where the largest tile fits (the smaller ones then fit too).
        if (!step_ok[kTileSizes - 1]) return;
        FusedArgs<T> f;
        for (int l = 0; l < layers; ++l) {
            f.w_off[l] = w_off[l];
            f.b_off[l] = b_off[l];
        }
        f.partial_stride = fused_partial_stride(param_count);
        f.act = static_cast<int>(hidden);
        f.loss = static_cast<int>(loss);
        constexpr int kWide = kWideFusedThreads<T>;
        for (auto kernel : {fused_mlp_kernel<T, kSinkPartial, 256>, fused_mlp_kernel<T, kSinkGradient, 256>,
                            fused_mlp_kernel<T, kSinkUpdate, 256>, fused_mlp_kernel<T, kSinkPartial, kWide>,
                            fused_mlp_kernel<T, kSinkGradient, kWide>, fused_mlp_kernel<T, kSinkUpdate, kWide>})
            check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(step_limit)),
                  "cudaFuncSetAttribute");
        for (auto kernel : {fused_epoch_kernel<T, 256>, fused_epoch_kernel<T, kWide>})
            check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(epoch_limit)),
                  "cudaFuncSetAttribute");
        if (cluster_epoch != kClusterEpochOff) plan_cluster_epoch(epoch_limit);
        fused_layout = f;
        fused_ok = true;
    }

    // fused_cluster_epoch_kernel on one cluster of `blocks` blocks of kThreads threads.
    template <int kThreads>
    static void launch_cluster_epoch(const FusedArgs<T>& f, const FusedEpoch<T>& e, int blocks, std::size_t smem,
                                     cudaStream_t stream) {
        const ClusterLaunch launch(dim3(1, 1, static_cast<unsigned>(blocks)), kThreads, stream, smem);
        // Errors reach cudaGetLastError, as those of <<< >>> launches do (see launch_tile).
        (void)cudaLaunchKernelEx(&launch.config, fused_cluster_epoch_kernel<T, kThreads>, f, e);
    }

    // Which tiles' epoch layouts a cluster of kPortableClusterBlocks blocks can run with. The
    // layouts were planned within epoch_limit, fused_epoch_kernel's budget; one that does not
    // fit this kernel's gets no active clusters here.
    void plan_cluster_epoch(std::size_t epoch_limit) {
        for (auto kernel : {fused_cluster_epoch_kernel<T, 256>, fused_cluster_epoch_kernel<T, kWideFusedThreads<T>>})
            check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(epoch_limit)),
                  "cudaFuncSetAttribute");
        for (int i = 0; i < kTileSizes; ++i) {
            if (!epoch_ok[i][0]) continue;
            const FusedLayout& s = epoch_layout[i][0];
            const ClusterLaunch launch(dim3(1, 1, kPortableClusterBlocks), static_cast<unsigned>(s.threads), nullptr,
                                       static_cast<std::size_t>(s.total) * sizeof(T));
            int active = 0;
            const cudaError_t status =
                s.threads == kWideFusedThreads<T>
                    ? cudaOccupancyMaxActiveClusters(&active, fused_cluster_epoch_kernel<T, kWideFusedThreads<T>>,
                                                     &launch.config)
                    : cudaOccupancyMaxActiveClusters(&active, fused_cluster_epoch_kernel<T, 256>, &launch.config);
            if (status != cudaSuccess) cudaGetLastError();
            cluster_epoch_ok[i] = status == cudaSuccess && active > 0;
        }
    }

    // The tile (an index into kFusedTileRows) of fused_cluster_epoch_kernel for batches of up to
    // rows_max rows: the forced one (FUSEDMLP_CUDA_FUSED_ROWS), else the smallest whose cluster
    // has at most kPortableClusterBlocks blocks; -1 where the kernel does not apply (off, a batch
    // of one tile unless kClusterEpochAnyBatch, one block, more blocks than a cluster, or no room).
    int cluster_epoch_tile(bool use_fused, std::size_t rows_max) const {
        if (cluster_epoch == kClusterEpochOff || !use_fused) return -1;
        if (cluster_epoch == kClusterEpochManyTiles && rows_max <= static_cast<std::size_t>(kFusedMaxRows)) return -1;
        for (int i = 0; i < kTileSizes; ++i) {
            if (fused_rows != 0 && kFusedTileRows[i] != fused_rows) continue;
            const std::size_t blocks = (rows_max + kFusedTileRows[i] - 1) / kFusedTileRows[i];
            if (blocks < 2) return -1;
            if (blocks <= static_cast<std::size_t>(kPortableClusterBlocks)) return cluster_epoch_ok[i] ? i : -1;
        }
        return -1;
    }

    // The tile size (an index into kFusedTileRows) for batches of up to `rows` rows: one tile
    // for a batch that fits one, else the smallest tile that still leaves no more blocks than
    // SMs, so that a small batch spreads over the GPU.
    int fused_tile(std::size_t rows) const {
        for (int i = 0; i < kTileSizes; ++i)
            if (rows <= static_cast<std::size_t>(kFusedTileRows[i])) return i;
        for (int i = 0; i < kTileSizes; ++i)
            if (kFusedTileRows[i] == fused_rows) return i;
        for (int i = 0; i < kTileSizes; ++i)
            if ((rows + kFusedTileRows[i] - 1) / kFusedTileRows[i] <= static_cast<std::size_t>(sms)) return i;
        return kTileSizes - 1;
    }

    std::size_t fused_blocks(std::size_t rows) const {
        const std::size_t tile = kFusedTileRows[fused_tile(rows)];
        return (rows + tile - 1) / tile;
    }

    bool fused_fits(std::size_t rows) const {
        return fused_on && fused_blocks(rows) * static_cast<std::size_t>(fused_layout.partial_stride) <= kMaxFusedPartial;
    }

    void reserve(std::size_t rows, bool use_fused) {
        if (use_fused) {
            const std::size_t blocks = fused_blocks(rows);
            if (partial.grow(blocks * static_cast<std::size_t>(fused_layout.partial_stride))) ++generation;
            if (partial_loss.grow(blocks)) ++generation;
            return;
        }
        if (rows <= ws_rows) return;
        std::size_t widest = 0;
        for (int l = 0; l < layers; ++l) {
            z[l].grow(rows * sizes[l + 1]);
            if (l + 1 < layers) h[l].grow(rows * sizes[l + 1]);
            widest = std::max(widest, sizes[l + 1]);
        }
        widest = std::max(widest, sizes[0]);
        if (wgrad_stream != nullptr) {
            // Only the output layer's dZ has a buffer of its own: the others are written over Z.
            dz[0].grow(rows * sizes.back());
        } else {
            dz[0].grow(rows * widest);
            dz[1].grow(rows * widest);
        }
        long long split_need = 0, wgrad_split_need = 0;
        const long long r = static_cast<long long>(rows);
        for (int l = 0; l < layers; ++l) {
            const long long fan_in = static_cast<long long>(sizes[l]), fan_out = static_cast<long long>(sizes[l + 1]);
            split_need = std::max(split_need, split_workspace_bound(r, fan_out, fan_in, sms));  // forward
            if (l > 0) split_need = std::max(split_need, split_workspace_bound(r, fan_in, fan_out, sms));  // input grad
            wgrad_split_need = std::max(wgrad_split_need, split_workspace_bound(fan_in + 1, fan_out, r, sms));
        }
        if (wgrad_stream != nullptr) {
            if (wgrad_split_need > 0) wgrad_split_ws.grow(static_cast<std::size_t>(wgrad_split_need));
        } else {
            split_need = std::max(split_need, wgrad_split_need);
        }
        if (split_need > 0) split_ws.grow(static_cast<std::size_t>(split_need));
        row_loss.grow(rows);
        if (loss_blocks_done.grow(1))
            check(cudaMemsetAsync(loss_blocks_done.get(), 0, sizeof(unsigned), stream), "cudaMemsetAsync");
        ws_rows = rows;
        ++generation;
    }

    // --- launches ---------------------------------------------------------------------------

    // Forward over `rows` rows of x (indexed by row_map when set) through the tiled GEMMs.
    void enqueue_forward(int rows, const T* x, const int* row_map, const T* p, const StepControl& c) {
        for (int l = 0; l < layers; ++l) {
            GemmArgs<T> g;
            g.M = rows;
            g.N = static_cast<int>(sizes[l + 1]);
            g.K = static_cast<int>(sizes[l]);
            g.a = l == 0 ? x : h[l - 1].get();
            g.lda = static_cast<long long>(sizes[l]);
            g.rows = l == 0 ? row_map : nullptr;
            g.b = p + w_off[l];
            g.bias = p + b_off[l];
            g.act = l + 1 < layers ? static_cast<int>(hidden) : kIdentity;
            g.z_out = z[l].get();
            g.h_out = l + 1 < layers ? h[l].get() : nullptr;
            g.control = c;
            launch_gemm<kForward>(g, split_ws.get(), split_ws.size(), stream, sms, gemm_forced);
        }
    }

    // Loss, backward and update (or gradients) of one tiled step after enqueue_forward.
    void enqueue_tiled_backward(int rows, const T* x, const int* row_map, const int* labels, const T* values,
                                const T* p, const SgdUpdate<T>& update, const StepControl& c) {
        const int k = static_cast<int>(sizes.back());
        LossArgs<T> la;
        la.loss = static_cast<int>(loss);
        la.n = rows;
        la.k = k;
        la.z = z[layers - 1].get();
        la.dz = dz[0].get();
        la.rows = row_map;
        la.labels = labels;
        la.values = values;
        la.row_loss = row_loss.get();
        la.control = c;
        la.blocks_done = loss_blocks_done.get();
        const int loss_blocks = (rows + kLossWarpsPerBlock - 1) / kLossWarpsPerBlock;
        launch_step_kernel(gemm_forced.dependent_launch, loss_rows_kernel<T>, dim3(loss_blocks), kReduceThreads, 0,
                           stream, la);
        // With the weight-gradient stream, layer l's dZ is dz[0] for the output layer and Z_l's
        // buffer below it (written there by layer l + 1's input gradient); without, the two dz
        // buffers alternate.
        const bool concurrent = wgrad_stream != nullptr;
        T* layer_dz = dz[0].get();
        int cur = 0;
        for (int l = layers - 1; l >= 0; --l) {
            if (concurrent) {
                // The weight gradient below reads this dZ: it waits for the kernel that wrote it.
                // Errors reach cudaGetLastError, as the launches' do (see launch_tile).
                (void)cudaEventRecord(dz_ready, stream);
                (void)cudaStreamWaitEvent(wgrad_stream, dz_ready, 0);
            }
            T* const next_dz = concurrent ? (l > 0 ? z[l - 1].get() : nullptr) : dz[cur ^ 1].get();
            if (l > 0) {
                GemmArgs<T> g;
                g.M = rows;
                g.N = static_cast<int>(sizes[l]);
                g.K = static_cast<int>(sizes[l + 1]);
                g.a = layer_dz;
                g.lda = g.K;
                g.b = p + w_off[l];
                g.act = static_cast<int>(hidden);
                g.z_in = z[l - 1].get();
                g.h_in = h[l - 1].get();
                g.c_out = next_dz;
                g.control = c;
                launch_gemm<kInputGrad>(g, split_ws.get(), split_ws.size(), stream, sms, gemm_forced);
            }
            GemmArgs<T> g;
            g.M = static_cast<int>(sizes[l]) + 1;
            g.N = static_cast<int>(sizes[l + 1]);
            g.K = rows;
            g.a = l == 0 ? x : h[l - 1].get();
            g.lda = static_cast<long long>(sizes[l]);
            g.rows = l == 0 ? row_map : nullptr;
            g.b = layer_dz;
            g.update = update;
            g.w_offset = w_off[l];
            g.b_offset = b_off[l];
            g.control = c;
            if (concurrent) {
                launch_gemm<kWeightGrad>(g, wgrad_split_ws.get(), wgrad_split_ws.size(), wgrad_stream, sms,
                                         gemm_forced);
            } else {
                launch_gemm<kWeightGrad>(g, split_ws.get(), split_ws.size(), stream, sms, gemm_forced);
            }
            layer_dz = next_dz;
            cur ^= 1;
        }
        if (concurrent) {
            // Nothing after the step (the next step's forward pass, a download) may start before
            // the last update.
            (void)cudaEventRecord(wgrad_done, wgrad_stream);
            (void)cudaStreamWaitEvent(stream, wgrad_done, 0);
        }
    }

    // fused_mlp_kernel on the block its layout's products were planned for.
    template <int kSink>
    void launch_fused_step(const FusedArgs<T>& f, int blocks, std::size_t smem) {
        launch_step_kernel(gemm_forced.dependent_launch,
                           f.s.threads == kWideFusedThreads<T> ? fused_mlp_kernel<T, kSink, kWideFusedThreads<T>>
                                                               : fused_mlp_kernel<T, kSink, 256>,
                           dim3(blocks), static_cast<unsigned>(f.s.threads), smem, stream, f);
    }

    // One step of `rows` rows in tiles of kFusedTileRows[tile] rows.
    void enqueue_fused(int tile, int rows, const T* x, const int* row_map, const int* labels, const T* values,
                       const T* p, const SgdUpdate<T>& update, const StepControl& c) {
        FusedArgs<T> f = fused_layout;
        f.s = step_layout[tile];
        f.x = x;
        f.rows = row_map;
        f.batch_rows = rows;
        f.labels = labels;
        f.values = values;
        f.params = p;
        f.partial = partial.get();
        f.partial_loss = partial_loss.get();
        f.control = c;
        const int blocks = (rows + f.s.rows - 1) / f.s.rows;
        f.update = update;
        const std::size_t smem = static_cast<std::size_t>(f.s.total) * sizeof(T);
        if (blocks == 1) {
            if (update.grad_out != nullptr) {
                launch_fused_step<kSinkGradient>(f, 1, smem);
            } else {
                launch_fused_step<kSinkUpdate>(f, 1, smem);
            }
            return;
        }
        launch_fused_step<kSinkPartial>(f, blocks, smem);
        ReduceArgs<T> r;
        r.partial = partial.get();
        r.partial_stride = f.partial_stride;
        r.blocks = blocks;
        r.param_count = param_count;
        r.weight_count = weight_count;
        r.partial_loss = partial_loss.get();
        r.loss_divisor = loss_divisor(static_cast<int>(loss), rows, static_cast<int>(sizes.back()));
        r.update = update;
        r.control = c;
        launch_step_kernel(gemm_forced.dependent_launch, fused_reduce_kernel<T>, dim3(fused_reduce_blocks<T>(param_count)),
                           kReduceThreads, 0, stream, r);
    }

    // One step of `rows` rows; fused_tile: the tile size of the fused path.
    void enqueue_step(bool use_fused, int fused_tile, int rows, const int* row_map, const SgdUpdate<T>& update,
                      const T* p, const StepControl& c) {
        const T* x = train_x.get();
        const int* labels = train_labels.get();
        const T* values = train_values.get();
        if (use_fused) {
            enqueue_fused(fused_tile, rows, x, row_map, labels, values, p, update, c);
        } else {
            enqueue_forward(rows, x, row_map, p, c);
            enqueue_tiled_backward(rows, x, row_map, labels, values, p, update, c);
        }
    }

    // Whether the epoch runs as one fused_epoch_kernel launch: every batch (of at most rows_max
    // rows) is one fused tile and the parameters (and momentum) fit in shared memory.
    bool one_launch_epoch(bool use_fused, std::size_t rows_max, double momentum) const {
        return (use_fused && rows_max <= static_cast<std::size_t>(kFusedMaxRows) &&
                epoch_ok[fused_tile(rows_max)][momentum != 0 ? 1 : 0]) ||
               cluster_epoch_tile(use_fused, rows_max) >= 0;
    }

    // The fused epoch kernels' arguments: the layout, the data, the optimizer and the buffers.
    void epoch_arguments(const FusedLayout& layout, std::size_t order_length, std::size_t batch_size,
                         std::size_t steps, const SgdConfig& config, FusedArgs<T>& f, FusedEpoch<T>& e) const {
        f = fused_layout;
        f.s = layout;
        f.x = train_x.get();
        f.labels = train_labels.get();
        f.values = train_values.get();
        f.update.momentum = T(config.momentum);
        f.update.weight_decay = T(config.weight_decay);
        f.update.nesterov = config.nesterov;
        f.control.diverged_step = control.get();
        f.control.started = control.get() + 1;
        f.control.lrs = lrs.get();
        f.control.step_loss = step_loss.get();
        e.steps = static_cast<int>(steps);
        e.batch_size = static_cast<int>(batch_size);
        e.order_length = static_cast<int>(order_length);
        e.order = order.get();
        for (int p = 0; p < 2; ++p) {
            e.params[p] = params[p].get();
            e.momentum[p] = momentum[p].get();
        }
    }

    void enqueue_epoch(bool use_fused, std::size_t order_length, std::size_t batch_size, std::size_t steps,
                       const SgdConfig& config) {
        // Every step's tiles as large as the largest batch's, for which begin_epoch reserved.
        const std::size_t rows_max = std::min(batch_size, order_length);
        const int tile = fused_tile(rows_max);
        if (const int cluster_tile = cluster_epoch_tile(use_fused, rows_max); cluster_tile >= 0) {
            FusedArgs<T> f;
            FusedEpoch<T> e;
            epoch_arguments(epoch_layout[cluster_tile][0], order_length, batch_size, steps, config, f, e);
            const int blocks = static_cast<int>((rows_max + f.s.rows - 1) / f.s.rows);
            const std::size_t smem = static_cast<std::size_t>(f.s.total) * sizeof(T);
            if (f.s.threads == kWideFusedThreads<T>) {
                launch_cluster_epoch<kWideFusedThreads<T>>(f, e, blocks, smem, stream);
            } else {
                launch_cluster_epoch<256>(f, e, blocks, smem, stream);
            }
            return;
        }
        if (one_launch_epoch(use_fused, rows_max, config.momentum)) {
            FusedArgs<T> f;
            FusedEpoch<T> e;
            epoch_arguments(epoch_layout[tile][config.momentum != 0 ? 1 : 0], order_length, batch_size, steps, config,
                            f, e);
            const std::size_t smem = static_cast<std::size_t>(f.s.total) * sizeof(T);
            // The block the layout's products were planned for.
            constexpr int kWide = kWideFusedThreads<T>;
            if (f.s.threads == kWide) {
                fused_epoch_kernel<T, kWide><<<1, kWide, smem, stream>>>(f, e);
            } else {
                fused_epoch_kernel<T, 256><<<1, 256, smem, stream>>>(f, e);
            }
            return;
        }
        for (std::size_t s = 0; s < steps; ++s) {
            const std::size_t start = s * batch_size;
            const int rows = static_cast<int>(std::min(batch_size, order_length - start));
            const int in = static_cast<int>(s % 2), out = in ^ 1;
            SgdUpdate<T> u;
            u.param_in = params[in].get();
            u.param_out = params[out].get();
            u.mom_in = momentum[in].get();
            u.mom_out = momentum[out].get();
            u.momentum = T(config.momentum);
            u.weight_decay = T(config.weight_decay);
            u.nesterov = config.nesterov;
            StepControl c;
            c.step = static_cast<int>(s);
            c.diverged_step = control.get();
            c.started = control.get() + 1;
            c.lrs = lrs.get();
            c.step_loss = step_loss.get();
            enqueue_step(use_fused, tile, rows, order.get() + start, u, params[in].get(), c);
        }
    }

    // Layer `layer`'s W and b between the host arrays w, b and their place in `flat` (the
    // parameters or the momentum): uploaded from const arrays, else downloaded; waits for both.
    template <class Host>
    void copy_layer(std::size_t layer, DeviceArray<T>& flat, Host* w, Host* b) {
        auto copy = [&](Host* host, long long offset, std::size_t n, const char* what) {
            T* device = flat.get() + offset;
            if constexpr (std::is_const_v<Host>) {
                check(cudaMemcpyAsync(device, host, n * sizeof(T), cudaMemcpyHostToDevice, stream), what);
            } else {
                check(cudaMemcpyAsync(host, device, n * sizeof(T), cudaMemcpyDeviceToHost, stream), what);
            }
        };
        copy(w, w_off[layer], sizes[layer] * sizes[layer + 1], "cudaMemcpy W");
        copy(b, b_off[layer], sizes[layer + 1], "cudaMemcpy b");
        check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }

    // Waits for the epoch that begin_epoch queued, brings its state back to buffer 0 and keeps
    // its result for end_epoch. Every call of CudaMlp does this first (settled_lock), so that
    // none sees an epoch half done.
    void settle() {
        const std::size_t steps = in_flight_steps;
        if (steps == 0) return;
        in_flight_steps = 0;
        check(cudaStreamSynchronize(stream), "epoch");
        const int diverged_step = control_host.get()[2];
        result = EpochResult{};
        result.diverged = diverged_step != INT_MAX && static_cast<std::size_t>(diverged_step) < steps;
        const std::size_t applied = result.diverged ? static_cast<std::size_t>(diverged_step) : steps;
        result.steps_run = result.diverged ? applied + 1 : steps;
        result.step_loss.assign(step_loss_host.get(), step_loss_host.get() + result.steps_run);
        if (applied % 2 == 1) {
            // Bring the current state back to buffer 0, where every call expects it.
            check(cudaMemcpyAsync(params[0].get(), params[1].get(), param_count * sizeof(T), cudaMemcpyDeviceToDevice,
                                  stream),
                  "cudaMemcpy params");
            check(cudaMemcpyAsync(momentum[0].get(), momentum[1].get(), param_count * sizeof(T),
                                  cudaMemcpyDeviceToDevice, stream),
                  "cudaMemcpy momentum");
            check(cudaStreamSynchronize(stream), "epoch");
        }
        started = started || applied > 0;
        result_unread = true;
    }

    std::unique_lock<std::mutex> settled_lock() {
        std::unique_lock lock(mutex);
        settle();
        return lock;
    }

    void copy_in_targets(std::size_t n, Targets<T> y, DeviceArray<int>& labels, DeviceArray<T>& values) {
        const std::size_t k = sizes.back();
        if (y.labels != nullptr) {
            std::vector<int> host(y.labels, y.labels + n);
            labels.grow(n);
            check(cudaMemcpyAsync(labels.get(), host.data(), n * sizeof(int), cudaMemcpyHostToDevice, stream),
                  "cudaMemcpy labels");
            check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        } else {
            values.grow(n * k);
            check(cudaMemcpyAsync(values.get(), y.values, n * k * sizeof(T), cudaMemcpyHostToDevice, stream),
                  "cudaMemcpy targets");
        }
    }
};

template <class T>
CudaMlp<T>::CudaMlp(std::vector<std::size_t> layer_sizes, Activation hidden, Loss loss)
    : impl_(std::make_unique<Impl>(std::move(layer_sizes), hidden, loss)) {}

template <class T>
CudaMlp<T>::~CudaMlp() = default;

template <class T>
const std::vector<std::size_t>& CudaMlp<T>::layer_sizes() const {
    return impl_->sizes;
}

template <class T>
Loss CudaMlp<T>::loss() const {
    return impl_->loss;
}

template <class T>
bool CudaMlp<T>::fused_eligible() const {
    return impl_->fused_ok;
}

template <class T>
bool CudaMlp<T>::fused() const {
    return impl_->fused_on;
}

template <class T>
std::string CudaMlp<T>::epoch_kernel(std::size_t rows, double momentum) const {
    const Impl& m = *impl_;
    const auto lock = impl_->settled_lock();
    const bool use_fused = m.fused_fits(rows);
    if (m.cluster_epoch_tile(use_fused, rows) >= 0) return "cluster";
    if (m.one_launch_epoch(use_fused, rows, momentum)) return "block";
    return use_fused ? "fused steps" : "tiled steps";
}

template <class T>
void CudaMlp<T>::use_fused(bool on) {
    const auto lock = impl_->settled_lock();
    if (on && !impl_->fused_ok)
        throw std::invalid_argument("fused: this network is not narrow enough for the fused kernel");
    impl_->fused_on = on;
}

template <class T>
void CudaMlp<T>::get_layer(std::size_t layer, T* w, T* b) const {
    const auto lock = impl_->settled_lock();
    impl_->copy_layer(layer, impl_->params[0], w, b);
}

template <class T>
void CudaMlp<T>::set_layer(std::size_t layer, const T* w, const T* b) {
    const auto lock = impl_->settled_lock();
    impl_->copy_layer(layer, impl_->params[0], w, b);
}

template <class T>
void CudaMlp<T>::get_momentum(std::size_t layer, T* w, T* b) const {
    const auto lock = impl_->settled_lock();
    impl_->copy_layer(layer, impl_->momentum[0], w, b);
}

template <class T>
void CudaMlp<T>::set_momentum(std::size_t layer, const T* w, const T* b) {
    const auto lock = impl_->settled_lock();
    impl_->copy_layer(layer, impl_->momentum[0], w, b);
}

template <class T>
bool CudaMlp<T>::optimizer_started() const {
    const auto lock = impl_->settled_lock();
    return impl_->started;
}

template <class T>
void CudaMlp<T>::set_optimizer_started(bool started) {
    const auto lock = impl_->settled_lock();
    impl_->started = started;
}

template <class T>
void CudaMlp<T>::reset_optimizer() {
    Impl& m = *impl_;
    const auto lock = m.settled_lock();
    m.started = false;
    check(cudaMemsetAsync(m.momentum[0].get(), 0, m.param_count * sizeof(T), m.stream), "cudaMemset");
    check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
}

template <class T>
void CudaMlp<T>::forward_logits(std::size_t n, const T* x, T* out) const {
    Impl& m = *impl_;
    const auto lock = m.settled_lock();
    const std::size_t d = m.sizes[0], k = m.sizes.back();
    // Bounded workspace for any n: inference runs in chunks of rows.
    const std::size_t chunk = std::max<std::size_t>(1, std::min<std::size_t>(n, 16384));
    m.reserve(chunk, false);
    m.scratch_x.grow(chunk * d);
    for (std::size_t start = 0; start < n; start += chunk) {
        const std::size_t rows = std::min(chunk, n - start);
        check(cudaMemcpyAsync(m.scratch_x.get(), x + start * d, rows * d * sizeof(T), cudaMemcpyHostToDevice,
                              m.stream),
              "cudaMemcpy X");
        m.enqueue_forward(static_cast<int>(rows), m.scratch_x.get(), nullptr, m.params[0].get(), StepControl{});
        check(cudaGetLastError(), "forward launch");
        check(cudaMemcpyAsync(out + start * k, m.z[m.layers - 1].get(), rows * k * sizeof(T),
                              cudaMemcpyDeviceToHost, m.stream),
              "cudaMemcpy logits");
        check(cudaStreamSynchronize(m.stream), "forward");
    }
}

template <class T>
void CudaMlp<T>::outputs(std::size_t n, const T* x, T* out) const {
    forward_logits(n, x, out);
    Impl& m = *impl_;
    if (m.loss == Loss::mse || n == 0) return;
    const auto lock = m.settled_lock();
    const std::size_t k = m.sizes.back();
    m.scratch_out.grow(n * k);
    check(cudaMemcpyAsync(m.scratch_out.get(), out, n * k * sizeof(T), cudaMemcpyHostToDevice, m.stream),
          "cudaMemcpy logits");
    const int blocks = static_cast<int>((n + kLossWarpsPerBlock - 1) / kLossWarpsPerBlock);
    output_activation_kernel<T><<<blocks, 32 * kLossWarpsPerBlock, 0, m.stream>>>(
        static_cast<int>(m.loss), static_cast<int>(n), static_cast<int>(k), m.scratch_out.get());
    check(cudaGetLastError(), "output activation launch");
    check(cudaMemcpyAsync(out, m.scratch_out.get(), n * k * sizeof(T), cudaMemcpyDeviceToHost, m.stream),
          "cudaMemcpy outputs");
    check(cudaStreamSynchronize(m.stream), "outputs");
}

template <class T>
double CudaMlp<T>::loss_and_grad(std::size_t n, const T* x, Targets<T> y, T* const* dw, T* const* db) const {
    Impl& m = *impl_;
    const auto lock = m.settled_lock();
    const std::size_t d = m.sizes[0];
    const bool use_fused = m.fused_fits(n);
    m.reserve(n, use_fused);
    m.scratch_x.grow(n * d);
    check(cudaMemcpyAsync(m.scratch_x.get(), x, n * d * sizeof(T), cudaMemcpyHostToDevice, m.stream), "cudaMemcpy X");
    m.copy_in_targets(n, y, m.scratch_labels, m.scratch_values);
    m.step_loss.grow(1);
    SgdUpdate<T> u;
    u.grad_out = m.grad.get();
    StepControl c;
    c.step_loss = m.step_loss.get();
    const int rows = static_cast<int>(n);
    const T* p = m.params[0].get();
    if (use_fused) {
        m.enqueue_fused(m.fused_tile(n), rows, m.scratch_x.get(), nullptr, m.scratch_labels.get(), m.scratch_values.get(), p, u, c);
    } else {
        m.enqueue_forward(rows, m.scratch_x.get(), nullptr, p, c);
        m.enqueue_tiled_backward(rows, m.scratch_x.get(), nullptr, m.scratch_labels.get(), m.scratch_values.get(), p,
                                 u, c);
    }
    check(cudaGetLastError(), "loss_and_grad launch");
    double value = 0;
    check(cudaMemcpyAsync(&value, m.step_loss.get(), sizeof(double), cudaMemcpyDeviceToHost, m.stream),
          "cudaMemcpy loss");
    for (int l = 0; l < m.layers; ++l) {
        const std::size_t wn = m.sizes[l] * m.sizes[l + 1], bn = m.sizes[l + 1];
        check(cudaMemcpyAsync(dw[l], m.grad.get() + m.w_off[l], wn * sizeof(T), cudaMemcpyDeviceToHost, m.stream),
              "cudaMemcpy dW");
        check(cudaMemcpyAsync(db[l], m.grad.get() + m.b_off[l], bn * sizeof(T), cudaMemcpyDeviceToHost, m.stream),
              "cudaMemcpy db");
    }
    check(cudaStreamSynchronize(m.stream), "loss_and_grad");
    return value;
}

template <class T>
void CudaMlp<T>::upload_training_set(std::size_t n, const T* x, Targets<T> y) {
    Impl& m = *impl_;
    const auto lock = m.settled_lock();
    if (m.train_x.grow(n * m.sizes[0])) ++m.generation;
    check(cudaMemcpyAsync(m.train_x.get(), x, n * m.sizes[0] * sizeof(T), cudaMemcpyHostToDevice, m.stream),
          "cudaMemcpy X");
    const bool labels_moved = y.labels != nullptr && m.train_labels.size() < n;
    const bool values_moved = y.values != nullptr && m.train_values.size() < n * m.sizes.back();
    if (labels_moved || values_moved) ++m.generation;
    m.copy_in_targets(n, y, m.train_labels, m.train_values);
    check(cudaStreamSynchronize(m.stream), "upload");
    m.train_rows = n;
}

template <class T>
std::size_t CudaMlp<T>::training_rows() const {
    const auto lock = impl_->settled_lock();
    return impl_->train_rows;
}

template <class T>
void CudaMlp<T>::begin_epoch(const std::int64_t* order, std::size_t order_length, std::size_t batch_size,
                             std::size_t steps, const double* lrs, const SgdConfig& config) {
    Impl& m = *impl_;
    const auto lock = m.settled_lock();
    if (m.result_unread) throw std::logic_error("begin_epoch: the last epoch's result was not read (end_epoch)");
    m.order_host.grow(order_length);
    if (!narrow_order(order, order_length, m.train_rows, m.order_host.get()))
        throw std::invalid_argument("order: indices must lie in [0, n) of the uploaded training set");
    if (steps == 0) {
        m.result = EpochResult{};
        m.result_unread = true;
        return;
    }
    const std::size_t rows_max = std::min(batch_size, order_length);
    const bool use_fused = m.fused_fits(rows_max);
    m.reserve(rows_max, use_fused);
    if (m.order.grow(order_length)) ++m.generation;
    if (m.lrs.grow(steps)) ++m.generation;
    if (m.step_loss.grow(steps)) ++m.generation;
    m.lrs_host.grow(steps);
    m.step_loss_host.grow(steps);

    std::copy_n(lrs, steps, m.lrs_host.get());
    int* control_host = m.control_host.get();
    control_host[0] = INT_MAX;
    control_host[1] = m.started ? 1 : 0;
    check(cudaMemcpyAsync(m.order.get(), m.order_host.get(), order_length * sizeof(int), cudaMemcpyHostToDevice,
                          m.stream),
          "cudaMemcpy order");
    check(cudaMemcpyAsync(m.lrs.get(), m.lrs_host.get(), steps * sizeof(double), cudaMemcpyHostToDevice, m.stream),
          "cudaMemcpy lrs");
    check(cudaMemcpyAsync(m.control.get(), control_host, 2 * sizeof(int), cudaMemcpyHostToDevice, m.stream),
          "cudaMemcpy control");

    const std::size_t nodes_per_step = m.one_launch_epoch(use_fused, rows_max, config.momentum) ? 0
                                       : use_fused                                  ? 2
                                                                                    : 6 * static_cast<std::size_t>(m.layers) + 2;
    const std::vector<double> key = {double(use_fused), double(order_length), double(batch_size), double(steps),
                                     config.momentum, double(config.nesterov), config.weight_decay};
    // Without momentum no step reads or writes the momentum buffers (sgd.cuh): both must hold
    // the kept content, whichever is current at the end. Queued here rather than as the graph's
    // first node: with kernel nodes alone, the launch of narrow's 128-node graph took 143 us of
    // host time instead of 248 on an H100 (under the profiler, 2026-11-26).
    if (config.momentum == 0)
        check(cudaMemcpyAsync(m.momentum[1].get(), m.momentum[0].get(), m.param_count * sizeof(T),
                              cudaMemcpyDeviceToDevice, m.stream),
              "cudaMemcpy momentum");
    bool launched = false;
    if (graphs_enabled() && steps * nodes_per_step <= kMaxGraphNodes) {
        // Recaptured only when the epoch's shape or a buffer changed; a graph that failed to
        // instantiate stays null until then, and the epoch is queued directly.
        if (m.graph_key != key || m.graph_generation != m.generation) {
            if (m.graph != nullptr) cudaGraphExecDestroy(m.graph);
            m.graph = nullptr;
            cudaGraph_t graph = nullptr;
            check(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
            m.enqueue_epoch(use_fused, order_length, batch_size, steps, config);
            const cudaError_t captured = cudaStreamEndCapture(m.stream, &graph);
            cudaGetLastError();
            if (captured == cudaSuccess && graph != nullptr) {
                if (cudaGraphInstantiate(&m.graph, graph, 0) != cudaSuccess) {
                    cudaGetLastError();
                    m.graph = nullptr;
                }
                cudaGraphDestroy(graph);
            }
            m.graph_key = key;
            m.graph_generation = m.generation;
        }
        if (m.graph != nullptr) {
            check(cudaGraphLaunch(m.graph, m.stream), "cudaGraphLaunch");
            launched = true;
        }
    }
    if (!launched) {
        m.enqueue_epoch(use_fused, order_length, batch_size, steps, config);
        check(cudaGetLastError(), "epoch launch");
    }

    check(cudaMemcpyAsync(control_host + 2, m.control.get(), sizeof(int), cudaMemcpyDeviceToHost, m.stream),
          "cudaMemcpy control");
    check(cudaMemcpyAsync(m.step_loss_host.get(), m.step_loss.get(), steps * sizeof(double), cudaMemcpyDeviceToHost,
                          m.stream),
          "cudaMemcpy step_loss");
    m.in_flight_steps = steps;
}

template <class T>
EpochResult CudaMlp<T>::end_epoch() {
    Impl& m = *impl_;
    const auto lock = m.settled_lock();
    if (!m.result_unread) throw std::logic_error("end_epoch: no epoch was begun since the last end_epoch");
    m.result_unread = false;
    return std::move(m.result);
}

}  // namespace fusedmlp::cuda
