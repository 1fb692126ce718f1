// A multilayer perceptron whose parameters, optimizer state and training set live in GPU
// memory. Plain C++: no CUDA header is needed to use it, so the pybind11 unit that wraps it is
// compiled by the host compiler alone. The implementation (cuda_mlp_impl.cuh) owns every device
// buffer and launches the kernels of the other cpp/cuda headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../kernels/activation.hpp"
#include "../kernels/loss.hpp"
#include "../kernels/sgd.hpp"

namespace fusedmlp::cuda {

// Whether a usable device exists: ok, else why not (no device, driver missing or too old).
struct DeviceStatus {
    bool ok = false;
    std::string reason;  // empty when ok
    std::string name;    // the device's name when ok
    int arch = 0;           // its compute capability in __CUDA_ARCH__'s form (900 for 9.0) when ok
    // Whether it has thread-block clusters (compute capability 9.0 or later).
    bool clusters() const { return arch >= 900; }
};
DeviceStatus device_status();

// The names by which FUSEDMLP_CUDA_TILE can force a float GEMM tile on device 0: the tiles with
// code for it in this build (tests skip the others, which the backend ignores).
std::vector<std::string> forceable_gemm_tiles();

struct EpochResult {
    std::size_t steps_run = 0;  // including the divergent step, when there is one
    bool diverged = false;
    std::vector<double> step_loss;  // of each step run
};

template <class T>
class CudaMlp {
public:
    CudaMlp(std::vector<std::size_t> layer_sizes, Activation hidden, Loss loss);
    ~CudaMlp();
    CudaMlp(const CudaMlp&) = delete;
    CudaMlp& operator=(const CudaMlp&) = delete;

    const std::vector<std::size_t>& layer_sizes() const;
    std::size_t layer_count() const { return layer_sizes().size() - 1; }
    Loss loss() const;

    // Narrow networks (every width <= 128) can run one fused kernel per batch tile; the tiled
    // GEMM path serves every network. use_fused(true) is refused where it is not eligible.
    bool fused_eligible() const;
    bool fused() const;
    void use_fused(bool on);
    // What runs an epoch of batches of up to `rows` rows with this momentum: "block" (one
    // fused_epoch_kernel launch), "cluster" (one fused_cluster_epoch_kernel launch), "fused
    // steps" or "tiled steps" (kernels per step).
    std::string epoch_kernel(std::size_t rows, double momentum) const;

    void get_layer(std::size_t layer, T* w, T* b) const;
    void set_layer(std::size_t layer, const T* w, const T* b);

    // Momentum buffers of one layer (zeros until a step with momentum ran) and whether the
    // optimizer has started (the next step is not a first step).
    void get_momentum(std::size_t layer, T* w, T* b) const;
    void set_momentum(std::size_t layer, const T* w, const T* b);
    bool optimizer_started() const;
    void set_optimizer_started(bool started);
    void reset_optimizer();

    // Logits (n, sizes.back()) of n rows of x; outputs() applies the loss's output activation.
    void forward_logits(std::size_t n, const T* x, T* out) const;
    void outputs(std::size_t n, const T* x, T* out) const;

    // Mean loss over the n rows and its gradient for every layer; changes nothing.
    double loss_and_grad(std::size_t n, const T* x, Targets<T> y, T* const* dw, T* const* db) const;

    // Copies the training set to the device; begin_epoch then indexes it by `order`.
    void upload_training_set(std::size_t n, const T* x, Targets<T> y);
    std::size_t training_rows() const;

    // One epoch over the uploaded training set, queued as one launch (a CUDA graph where
    // possible) behind the uploads of its order and rates. begin_epoch returns once it is
    // queued, so that the host can prepare the next epoch meanwhile; end_epoch waits for it and
    // returns its result. Every other call waits for it first. Steps past a divergent one are
    // no-ops on the device; the parameters and momentum are those from before the divergent
    // step. begin_epoch throws std::invalid_argument, having changed nothing, when an index of
    // the order lies outside the training set. One epoch at a time: begin_epoch throws
    // std::logic_error while the last epoch's result is unread, end_epoch when there is none.
    void begin_epoch(const std::int64_t* order, std::size_t order_length, std::size_t batch_size, std::size_t steps,
                     const double* lrs, const SgdConfig& config);
    EpochResult end_epoch();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fusedmlp::cuda
