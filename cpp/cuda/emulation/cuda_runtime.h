// A CPU stand-in for the CUDA runtime, for developers without a GPU: the kernels of cpp/cuda
// run as ordinary C++, each block's threads as std::threads (one block at a time, or the
// blocks of one thread-block cluster at a time) with barriers for __syncthreads / __syncwarp /
// cluster_sync and an exchange buffer for warp shuffles; device
// memory is host memory (filled with 0xFF bytes, NaN as floats, to expose reads of unset
// values); CUDA graphs record and replay their launches. Only what cpp/cuda uses is here.
// Streams: a stream that waits on an event before doing anything else is a fork of the stream
// that recorded it, and its launches are held back until something needs them (a wait on one
// of its events, a synchronisation, a copy, the end of a capture): its work runs as late as its
// dependencies allow and the other stream's as early, the order in which a missing dependency
// between them shows.
// build_emulated.sh compiles the CUDA backend against it. It checks indexing, tiling,
// reductions and the host logic; it cannot check timing, occupancy or the GPU memory model.
#pragma once
#define FUSEDMLP_CUDA_EMULATED 1
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <climits>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>
#include <memory>
#include <tuple>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct Dim3 { unsigned x = 0, y = 0, z = 0; Dim3() = default; Dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
inline thread_local Dim3 threadIdx, blockIdx;
inline Dim3 blockDim, gridDim;
#include <cstring>
#include <mutex>
using std::min; using std::max; using std::isfinite; using std::fmax; using std::fabs;
using std::exp; using std::log; using std::log1p; using std::tanh; using std::erfc;
inline float expf(float x){return std::exp(x);} inline float logf(float x){return std::log(x);}
inline float log1pf(float x){return std::log1p(x);} inline float tanhf(float x){return std::tanh(x);}
inline float erfcf(float x){return std::erfc(x);}
// What the threads of one block share. Kernels' own __shared__ variables are static (one copy
// for every block), so only kernels whose shared memory is FUSEDMLP_CLUSTER_SHARED may run
// their blocks at once, in clusters.
struct EmuBlock {
    std::barrier<> barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    double exchange[1024];
    std::atomic<int> sync_false_count{0};
    alignas(64) unsigned char shared[48 * 1024];  // FUSEDMLP_CLUSTER_SHARED
    // The dynamic shared memory of a block of a cluster (one of several run at once); null: the
    // blocks run one at a time and share g_dyn_smem_single.
    static constexpr std::size_t kDynamicBytes = 1 << 18;
    std::unique_ptr<unsigned char[]> dynamic_storage;
    unsigned char* dynamic = nullptr;  // 64-byte aligned, in dynamic_storage
    EmuBlock(unsigned threads, bool own_dynamic) : barrier(threads) {
        for (unsigned w = 0; w < (threads + 31) / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
        std::memset(shared, 0xFF, sizeof shared);  // NaN as floats, as device memory
        if (own_dynamic) {
            dynamic_storage.reset(new unsigned char[kDynamicBytes + 64]);
            dynamic = dynamic_storage.get() + (64 - reinterpret_cast<std::uintptr_t>(dynamic_storage.get()) % 64) % 64;
            std::memset(dynamic, 0xFF, kDynamicBytes);
        }
    }
};
struct EmuCluster {
    std::barrier<> barrier;
    std::vector<std::unique_ptr<EmuBlock>> blocks;
};
inline thread_local EmuBlock* g_block;
inline thread_local EmuCluster* g_cluster;
inline thread_local unsigned g_cluster_rank;
alignas(64) inline unsigned char g_dyn_smem_single[EmuBlock::kDynamicBytes];
// The running block's dynamic shared memory (build_emulated.sh points the kernels' extern
// __shared__ array here).
inline thread_local unsigned char* g_dyn_smem = g_dyn_smem_single;
inline void __syncthreads() { g_block->barrier.arrive_and_wait(); }
inline void __syncwarp() { g_block->warps[threadIdx.x / 32]->arrive_and_wait(); }
inline int __syncthreads_and(int predicate) {
    __syncthreads();  // every thread has read the previous call's result
    if (threadIdx.x == 0) g_block->sync_false_count = 0;
    __syncthreads();
    if (!predicate) ++g_block->sync_false_count;
    __syncthreads();
    return g_block->sync_false_count.load() == 0;
}
template <class V> V __shfl_xor_sync(unsigned, V v, int offset) {
    int t = threadIdx.x; int warp = t / 32, lane = t % 32;
    __syncwarp();
    g_block->exchange[t] = static_cast<double>(v);
    __syncwarp();
    V out = static_cast<V>(g_block->exchange[warp * 32 + (lane ^ offset)]);
    __syncwarp();
    return out;
}
// Thread-block clusters (cluster.cuh's device versions), along z: the cluster is the z blocks
// of one (x, y).
#define FUSEDMLP_CUDA_CLUSTERS 1
#define FUSEDMLP_CLUSTER_SHARED(T, name, n)                                   \
    static_assert(sizeof(T) * (n) <= sizeof(EmuBlock::shared), "emulated shared memory"); \
    T* name = reinterpret_cast<T*>(g_block->shared)
namespace fusedmlp::cuda {
inline void cluster_sync() { g_cluster->barrier.arrive_and_wait(); }
inline unsigned cluster_rank() { return g_cluster_rank; }
template <class T> T* cluster_peer(T* p, unsigned rank) {
    if (rank >= g_cluster->blocks.size()) std::abort();
    const auto* byte = reinterpret_cast<const unsigned char*>(p);
    const long in_static = byte - g_block->shared;
    if (in_static >= 0 && in_static < static_cast<long>(sizeof(EmuBlock::shared)))
        return reinterpret_cast<T*>(g_cluster->blocks[rank]->shared + in_static);
    const long in_dynamic = g_block->dynamic != nullptr ? byte - g_block->dynamic : -1;
    if (in_dynamic < 0 || in_dynamic >= static_cast<long>(EmuBlock::kDynamicBytes)) std::abort();
    return reinterpret_cast<T*>(g_cluster->blocks[rank]->dynamic + in_dynamic);
}
}  // namespace fusedmlp::cuda
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32); }
inline int atomicMin(int* p, int v) { static std::mutex m; std::lock_guard l(m); int old = *p; *p = std::min(old, v); return old; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { static std::mutex m; std::lock_guard l(m); unsigned old = *p; *p = old + v; return old; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
// cluster_z > 1: clusters of cluster_z blocks along z (which it divides), run at once.
template <class F> void emu_launch(Dim3 grid, unsigned threads, F body, unsigned cluster_z = 1) {
    blockDim = {threads, 1, 1}; gridDim = grid;
    const unsigned gz = std::max(grid.z, 1u);
    if (gz % cluster_z != 0) std::abort();
    for (unsigned bz0 = 0; bz0 < gz; bz0 += cluster_z)
    for (unsigned by = 0; by < std::max(grid.y, 1u); ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            EmuCluster cluster{std::barrier<>(static_cast<std::ptrdiff_t>(threads * cluster_z)), {}};
            for (unsigned r = 0; r < cluster_z; ++r) cluster.blocks.push_back(std::make_unique<EmuBlock>(threads, cluster_z > 1));
            std::vector<std::thread> ts;
            for (unsigned r = 0; r < cluster_z; ++r)
                for (unsigned t = 0; t < threads; ++t)
                    ts.emplace_back([&, r, t, bx, by, bz0] {
                        threadIdx = {t, 0, 0};
                        blockIdx = {bx, by, bz0 + r};
                        g_block = cluster.blocks[r].get();
                        g_cluster = &cluster;
                        g_cluster_rank = r;
                        g_dyn_smem = cluster_z > 1 ? cluster.blocks[r]->dynamic : g_dyn_smem_single;
                        body();
                    });
            for (auto& th : ts) th.join();
        }
}
// ---- runtime API emulation ----
#include <cstring>
#include <cstdlib>
#include <string>
#define CUDART_VERSION 13000
enum cudaError_t { cudaSuccess = 0, cudaErrorInsufficientDriver = 35, cudaErrorNoDevice = 100, cudaErrorOther = 999 };
struct EmuStream;
using cudaStream_t = EmuStream*;
struct EmuGraph { std::vector<std::function<void()>> nodes; };
using cudaGraph_t = EmuGraph*;
using cudaGraphExec_t = EmuGraph*;
struct cudaDeviceProp { char name[256]; int major, minor; };
struct cudaFuncAttributes { size_t sharedSizeBytes; };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum { cudaStreamNonBlocking = 1 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeThreadLocal };
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount, cudaDevAttrMaxSharedMemoryPerBlockOptin
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize, cudaFuncAttributeNonPortableClusterSizeAllowed };
using dim3 = Dim3;
inline std::vector<std::function<void()>>* g_capture = nullptr;
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) { std::strcpy(p->name, "CPU emulator"); p->major = 9; p->minor = 0; return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount ? 4 : 232448;
    return cudaSuccess;
}
// A stream's held-back launches (see the top), run in order by emu_flush.
struct EmuStream {
    bool used = false;    // launched, recorded or waited on anything yet
    bool forked = false;  // its first act was a wait on another stream's event
    std::vector<std::function<void()>> held;  // launches base, base + 1, ... of the stream
    std::size_t base = 0, done = 0;           // launches dropped from `held`; of those in it, run
};
struct EmuEvent { EmuStream* stream = nullptr; std::size_t position = 0; };
using cudaEvent_t = EmuEvent*;
enum { cudaEventDisableTiming = 2 };
inline std::vector<EmuStream*>& emu_streams() { static std::vector<EmuStream*> all; return all; }
// Runs the stream's held launches up to launch `upto` (an event's position).
inline void emu_flush(EmuStream* s, std::size_t upto) {
    while (s->base + s->done < upto) s->held[s->done++]();
    if (s->done == s->held.size()) {
        s->base += s->done;
        s->held.clear();
        s->done = 0;
    }
}
inline void emu_flush_all() { for (EmuStream* s : emu_streams()) emu_flush(s, s->base + s->held.size()); }
// Runs (or captures) `run` now, or holds it back on a forked stream.
inline void emu_enqueue(cudaStream_t s, std::function<void()> run) {
    if (s != nullptr) s->used = true;
    if (s != nullptr && s->forked) s->held.push_back(std::move(run)); else run();
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, int) { *s = new EmuStream; emu_streams().push_back(*s); return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    emu_flush(s, s->base + s->held.size());
    auto& all = emu_streams();
    all.erase(std::find(all.begin(), all.end(), s));
    delete s;
    return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = new EmuEvent; return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    s->used = true;
    *e = EmuEvent{s, s->base + s->held.size()};
    return cudaSuccess;
}
inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (!s->used && e->stream != s) s->forked = true;
    s->used = true;
    emu_flush(e->stream, e->position);
    return cudaSuccess;
}
inline cudaError_t cudaMalloc(void* p, size_t bytes) { void* m = std::malloc(bytes); std::memset(m, 0xFF, bytes); *static_cast<void**>(p) = m; return cudaSuccess; }
template <class V> cudaError_t cudaMalloc(V** p, size_t bytes) { return cudaMalloc(static_cast<void*>(p), bytes); }
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMallocHost(void** p, size_t bytes) { *p = std::malloc(bytes); return cudaSuccess; }
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind kind, cudaStream_t) {
    emu_flush_all();
    if (g_capture == nullptr) { std::memcpy(d, s, n); return cudaSuccess; }
    if (kind != cudaMemcpyDeviceToDevice) std::abort();  // a graph may only copy device memory here
    g_capture->push_back([d, s, n] { std::memcpy(d, s, n); });
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { emu_flush_all(); std::memset(d, v, n); return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { emu_flush_all(); return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
template <class F> cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute a, int v) {
    if (a == cudaFuncAttributeMaxDynamicSharedMemorySize && v > static_cast<int>(EmuBlock::kDynamicBytes)) std::abort();
    return cudaSuccess;
}
template <class F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, F) { a->sharedSizeBytes = 256; return cudaSuccess; }
inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) { g_capture = new std::vector<std::function<void()>>(); return cudaSuccess; }
inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* g) { emu_flush_all(); *g = new EmuGraph{std::move(*g_capture)}; delete g_capture; g_capture = nullptr; return cudaSuccess; }
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) { *e = new EmuGraph(*g); return cudaSuccess; }
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t g) { delete g; return cudaSuccess; }
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t g, cudaStream_t) { for (auto& f : g->nodes) f(); return cudaSuccess; }
inline Dim3 to_dim3(Dim3 d) { return d; }
inline Dim3 to_dim3(long long x) { return Dim3{static_cast<unsigned>(x), 1, 1}; }
// A launch now, or into the graph being captured: when it runs (or is captured) is emu_enqueue's.
inline void emu_run_or_capture(std::function<void()> run) {
    if (g_capture) g_capture->push_back(std::move(run)); else run();
}
template <class G, class B, class F> void emu_kernel(G grid, B block, size_t, cudaStream_t stream, F body) {
    Dim3 g = to_dim3(grid);
    unsigned threads = static_cast<unsigned>(block);
    emu_enqueue(stream, [g, threads, body] { emu_run_or_capture([g, threads, body] { emu_launch(g, threads, body); }); });
}
// Launches with a cluster dimension (along z only, as cpp/cuda uses it), and as programmatic
// dependents, which run in stream order here as any launch does.
enum cudaLaunchAttributeID { cudaLaunchAttributeClusterDimension = 4, cudaLaunchAttributeProgrammaticStreamSerialization = 5 };
struct cudaLaunchAttributeValue { struct { unsigned x, y, z; } clusterDim; int programmaticStreamSerializationAllowed; };
struct cudaLaunchAttribute { cudaLaunchAttributeID id; cudaLaunchAttributeValue val; };
struct cudaLaunchConfig_t {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    cudaLaunchAttribute* attrs;
    unsigned numAttrs;
};
template <class... P, class... A> cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* c, void (*kernel)(P...), A&&... args) {
    unsigned cluster_z = 1;
    for (unsigned i = 0; i < c->numAttrs; ++i) {
        if (c->attrs[i].id == cudaLaunchAttributeProgrammaticStreamSerialization) continue;
        const auto& d = c->attrs[i].val.clusterDim;
        if (c->attrs[i].id != cudaLaunchAttributeClusterDimension || d.x != 1 || d.y != 1) std::abort();
        cluster_z = d.z;
    }
    const Dim3 g = c->gridDim;
    const unsigned threads = c->blockDim.x;
    auto run = [g, threads, cluster_z, kernel, a = std::make_tuple(std::decay_t<A>(args)...)] {
        emu_launch(g, threads, [&] { std::apply(kernel, a); }, cluster_z);
    };
    emu_enqueue(c->stream, [run] { emu_run_or_capture(run); });
    return cudaSuccess;
}
template <class F> cudaError_t cudaOccupancyMaxActiveClusters(int* n, F, const cudaLaunchConfig_t*) { *n = 1; return cudaSuccess; }
