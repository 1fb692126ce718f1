// A multilayer perceptron whose parameters, optimizer state and training workspace live in
// native memory: whole epochs of mini-batch SGD run here without returning to the caller.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <vector>

#include "activation.hpp"
#include "loss.hpp"
#include "sgd.hpp"

namespace fusedmlp {

// Buffers for one forward + backward pass over up to `rows` samples. Sized once and reused by
// every step, so the training loop allocates nothing. reserve() sizes the pass's buffers; the
// gathered batch (x, labels, targets) is sized by the training loop, its only user.
template <class T>
struct Workspace {
    std::size_t rows = 0;
    std::vector<T> x;                    // the gathered training batch (rows, sizes[0])
    std::vector<std::int64_t> labels;    // its class indices, for cross_entropy
    std::vector<T> targets;              // or its target values (rows, sizes.back())
    std::vector<std::vector<T>> z, h;    // per layer: pre-activation and activation (rows, fan_out)
    std::vector<T> grad, grad_next;      // dL/dz of the current and the previous layer
    std::vector<std::vector<T>> dw, db;  // per-layer gradients
    std::vector<T> w_t;                  // a transposed weight matrix

    void reserve(const std::vector<std::size_t>& sizes, std::size_t batch_rows);
};

template <class T>
class Mlp {
public:
    Mlp(std::vector<std::size_t> layer_sizes, Activation hidden, Loss loss);

    const std::vector<std::size_t>& layer_sizes() const { return sizes_; }
    std::size_t layer_count() const { return sizes_.size() - 1; }
    Activation activation() const { return hidden_; }
    Loss loss() const { return loss_; }

    void get_layer(std::size_t layer, T* w, T* b) const;
    void set_layer(std::size_t layer, const T* w, const T* b);

    // Logits of the last layer for n rows of x, written to out (n, sizes.back()).
    void forward_logits(std::size_t n, const T* x, T* out) const;

    // Mean loss over the n rows of x, and its gradient for every layer (dw[l], db[l] point at
    // arrays shaped like the parameters). Changes nothing in the model.
    double loss_and_grad(std::size_t n, const T* x, Targets<T> y, T* const* dw, T* const* db) const;

    // Forget the momentum buffers: the next step is a first step.
    void reset_optimizer();

    // Copies of each layer's momentum buffers (zeros before any step with momentum) and
    // whether a step has been taken since the last reset; and their replacement.
    bool get_optimizer_state(std::size_t layer, T* w_buf, T* b_buf) const;
    void set_optimizer_state(std::size_t layer, const T* w_buf, const T* b_buf, bool started);

    struct Progress {
        std::size_t next_step;  // the first step not yet run
        bool diverged;          // the step before next_step diverged and was not applied
    };

    // Steps [first, steps) of an epoch: batches are consecutive slices of `order` (indices
    // into the n samples of x and y) of batch_size rows, the last possibly partial; step s
    // uses lrs[s] and writes its loss (before the update) to step_loss[s]. Returns after the
    // first step that ends at or past `deadline`, so that a caller can react to interrupts
    // between calls, or after a step that diverges: its loss or a parameter value it would
    // write is non-finite, and the parameters and momentum stay as they were before it.
    Progress train_steps(const T* x, Targets<T> y, const std::int64_t* order, std::size_t order_length,
                         std::size_t batch_size, std::size_t first, std::size_t steps, const double* lrs,
                         const SgdConfig& config, double* step_loss,
                         std::chrono::steady_clock::time_point deadline);

private:
    // Forward and backward over `rows` samples of x into ws.z, ws.h, ws.dw and ws.db.
    double compute_gradients(Workspace<T>& ws, std::size_t rows, const T* x, Targets<T> batch_targets) const;
    // The update of every layer into the *_next_ buffers, swapped in only if all of it is finite.
    bool apply_update(double lr, const SgdConfig& config);
    void allocate_momentum();
    void gather_batch(const T* x, Targets<T> y, const std::int64_t* rows, std::size_t count);
    Targets<T> batch_targets() const;

    std::vector<std::size_t> sizes_;
    Activation hidden_;
    Loss loss_;
    std::vector<std::vector<T>> w_, b_;
    std::vector<std::vector<T>> w_momentum_, b_momentum_;  // empty until a step uses momentum
    // Where each step writes its updated values before they replace the current ones.
    std::vector<std::vector<T>> w_next_, b_next_, w_momentum_next_, b_momentum_next_;
    bool optimizer_started_ = false;
    Workspace<T> workspace_;
    // Training and set_layer are exclusive; reads (forward, gradients, get_layer) may overlap.
    mutable std::shared_mutex mutex_;
};

}  // namespace fusedmlp
