#include "mlp.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>

#include "dense.hpp"

namespace fusedmlp {

namespace {

// Rows of a forward pass for inference held at once: bounds memory for any n.
constexpr std::size_t kForwardChunkRows = 256;

std::size_t widest(const std::vector<std::size_t>& sizes) {
    return *std::max_element(sizes.begin(), sizes.end());
}

std::size_t largest_hidden_weight(const std::vector<std::size_t>& sizes) {
    std::size_t largest = 0;
    for (std::size_t l = 1; l + 1 < sizes.size(); ++l) largest = std::max(largest, sizes[l] * sizes[l + 1]);
    return largest;
}

}  // namespace

template <class T>
void Workspace<T>::reserve(const std::vector<std::size_t>& sizes, std::size_t batch_rows) {
    const std::size_t layers = sizes.size() - 1;
    if (dw.size() != layers) {
        dw.resize(layers);
        db.resize(layers);
        for (std::size_t l = 0; l < layers; ++l) {
            dw[l].resize(sizes[l] * sizes[l + 1]);
            db[l].resize(sizes[l + 1]);
        }
        w_t.resize(largest_hidden_weight(sizes));
    }
    if (batch_rows <= rows) return;
    rows = batch_rows;
    z.resize(layers);
    h.resize(layers);
    for (std::size_t l = 0; l < layers; ++l) {
        z[l].resize(rows * sizes[l + 1]);
        if (l + 1 < layers) h[l].resize(rows * sizes[l + 1]);
    }
    grad.resize(rows * widest(sizes));
    grad_next.resize(rows * widest(sizes));
}

template <class T>
Mlp<T>::Mlp(std::vector<std::size_t> layer_sizes, Activation hidden, Loss loss)
    : sizes_(std::move(layer_sizes)), hidden_(hidden), loss_(loss) {
    const std::size_t layers = layer_count();
    w_.resize(layers);
    b_.resize(layers);
    for (std::size_t l = 0; l < layers; ++l) {
        w_[l].assign(sizes_[l] * sizes_[l + 1], T(0));
        b_[l].assign(sizes_[l + 1], T(0));
    }
    w_next_ = w_;
    b_next_ = b_;
}

template <class T>
void Mlp<T>::get_layer(std::size_t layer, T* w, T* b) const {
    std::shared_lock lock(mutex_);
    std::copy(w_[layer].begin(), w_[layer].end(), w);
    std::copy(b_[layer].begin(), b_[layer].end(), b);
}

template <class T>
void Mlp<T>::set_layer(std::size_t layer, const T* w, const T* b) {
    std::unique_lock lock(mutex_);
    std::copy_n(w, w_[layer].size(), w_[layer].begin());
    std::copy_n(b, b_[layer].size(), b_[layer].begin());
}

template <class T>
void Mlp<T>::forward_logits(std::size_t n, const T* x, T* out) const {
    std::shared_lock lock(mutex_);
    const std::size_t layers = layer_count();
    const std::size_t k = sizes_.back();
    const std::size_t chunk = std::min(n, kForwardChunkRows);
    std::vector<T> z(chunk * widest(sizes_)), h_in(z.size()), h_out(z.size());
    for (std::size_t start = 0; start < n; start += chunk) {
        const std::size_t rows = std::min(chunk, n - start);
        const T* input = x + start * sizes_[0];
        for (std::size_t l = 0; l < layers; ++l) {
            const DenseShape s{rows, sizes_[l], sizes_[l + 1]};
            if (l + 1 == layers) {
                T* logits = out + start * k;
                dense_forward(s, input, w_[l].data(), b_[l].data(), Activation::identity, logits, logits);
            } else {
                dense_forward(s, input, w_[l].data(), b_[l].data(), hidden_, z.data(), h_out.data());
                std::swap(h_in, h_out);
                input = h_in.data();
            }
        }
    }
}

template <class T>
double Mlp<T>::compute_gradients(Workspace<T>& ws, std::size_t rows, const T* x, Targets<T> batch_targets) const {
    const std::size_t layers = layer_count();
    const T* input = x;
    for (std::size_t l = 0; l < layers; ++l) {
        const DenseShape s{rows, sizes_[l], sizes_[l + 1]};
        const bool hidden = l + 1 < layers;
        T* z = ws.z[l].data();
        T* h = hidden ? ws.h[l].data() : z;
        dense_forward(s, input, w_[l].data(), b_[l].data(), hidden ? hidden_ : Activation::identity, z, h);
        input = h;
    }
    T* dz = ws.grad.data();
    T* dz_prev = ws.grad_next.data();
    const double value = fusedmlp::loss_and_grad(loss_, rows, sizes_.back(), ws.z.back().data(), batch_targets, dz);
    for (std::size_t l = layers; l-- > 0;) {
        const DenseShape s{rows, sizes_[l], sizes_[l + 1]};
        const T* layer_input = l == 0 ? x : ws.h[l - 1].data();
        dense_weight_grads(s, layer_input, dz, ws.dw[l].data(), ws.db[l].data());
        if (l > 0) {
            dense_input_grad(s, dz, w_[l].data(), hidden_, ws.z[l - 1].data(), ws.h[l - 1].data(), dz_prev,
                             ws.w_t.data());
            std::swap(dz, dz_prev);
        }
    }
    return value;
}

template <class T>
double Mlp<T>::loss_and_grad(std::size_t n, const T* x, Targets<T> y, T* const* dw, T* const* db) const {
    std::shared_lock lock(mutex_);
    Workspace<T> ws;
    ws.reserve(sizes_, n);
    const double value = compute_gradients(ws, n, x, y);
    for (std::size_t l = 0; l < layer_count(); ++l) {
        std::copy(ws.dw[l].begin(), ws.dw[l].end(), dw[l]);
        std::copy(ws.db[l].begin(), ws.db[l].end(), db[l]);
    }
    return value;
}

template <class T>
void Mlp<T>::reset_optimizer() {
    std::unique_lock lock(mutex_);
    optimizer_started_ = false;
}

template <class T>
bool Mlp<T>::get_optimizer_state(std::size_t layer, T* w_buf, T* b_buf) const {
    std::shared_lock lock(mutex_);
    if (w_momentum_.empty()) {
        std::fill_n(w_buf, w_[layer].size(), T(0));
        std::fill_n(b_buf, b_[layer].size(), T(0));
    } else {
        std::copy(w_momentum_[layer].begin(), w_momentum_[layer].end(), w_buf);
        std::copy(b_momentum_[layer].begin(), b_momentum_[layer].end(), b_buf);
    }
    return optimizer_started_;
}

template <class T>
void Mlp<T>::set_optimizer_state(std::size_t layer, const T* w_buf, const T* b_buf, bool started) {
    std::unique_lock lock(mutex_);
    allocate_momentum();
    std::copy_n(w_buf, w_momentum_[layer].size(), w_momentum_[layer].begin());
    std::copy_n(b_buf, b_momentum_[layer].size(), b_momentum_[layer].begin());
    optimizer_started_ = started;
}

template <class T>
void Mlp<T>::allocate_momentum() {
    if (!w_momentum_.empty()) return;
    const std::size_t layers = layer_count();
    w_momentum_.resize(layers);
    b_momentum_.resize(layers);
    for (std::size_t l = 0; l < layers; ++l) {
        w_momentum_[l].assign(w_[l].size(), T(0));
        b_momentum_[l].assign(b_[l].size(), T(0));
    }
    w_momentum_next_ = w_momentum_;
    b_momentum_next_ = b_momentum_;
}

template <class T>
void Mlp<T>::gather_batch(const T* x, Targets<T> y, const std::int64_t* rows, std::size_t count) {
    Workspace<T>& ws = workspace_;
    const std::size_t d = sizes_[0];
    const std::size_t k = sizes_.back();
    for (std::size_t r = 0; r < count; ++r) {
        const std::size_t i = static_cast<std::size_t>(rows[r]);
        std::copy_n(x + i * d, d, ws.x.begin() + r * d);
        if (y.labels != nullptr) {
            ws.labels[r] = y.labels[i];
        } else {
            std::copy_n(y.values + i * k, k, ws.targets.begin() + r * k);
        }
    }
}

template <class T>
Targets<T> Mlp<T>::batch_targets() const {
    Targets<T> t;
    if (loss_ == Loss::cross_entropy) {
        t.labels = workspace_.labels.data();
    } else {
        t.values = workspace_.targets.data();
    }
    return t;
}

template <class T>
bool Mlp<T>::apply_update(double lr, const SgdConfig& config) {
    const SgdStep<T> weight_step(lr, config, !optimizer_started_);
    SgdConfig bias_config = config;
    bias_config.weight_decay = 0;
    const SgdStep<T> bias_step(lr, bias_config, !optimizer_started_);
    const bool momentum = config.momentum != 0;
    bool finite = true;
    for (std::size_t l = 0; l < layer_count() && finite; ++l) {
        const T* w_buf = momentum ? w_momentum_[l].data() : nullptr;
        const T* b_buf = momentum ? b_momentum_[l].data() : nullptr;
        T* w_buf_next = momentum ? w_momentum_next_[l].data() : nullptr;
        T* b_buf_next = momentum ? b_momentum_next_[l].data() : nullptr;
        finite = sgd_update_into(w_[l].size(), w_[l].data(), workspace_.dw[l].data(), w_buf, w_next_[l].data(),
                                 w_buf_next, weight_step) &&
                 sgd_update_into(b_[l].size(), b_[l].data(), workspace_.db[l].data(), b_buf, b_next_[l].data(),
                                 b_buf_next, bias_step);
    }
    if (!finite) return false;
    w_.swap(w_next_);
    b_.swap(b_next_);
    if (momentum) {
        w_momentum_.swap(w_momentum_next_);
        b_momentum_.swap(b_momentum_next_);
    }
    optimizer_started_ = true;
    return true;
}

template <class T>
typename Mlp<T>::Progress Mlp<T>::train_steps(const T* x, Targets<T> y, const std::int64_t* order,
                                              std::size_t order_length, std::size_t batch_size, std::size_t first,
                                              std::size_t steps, const double* lrs, const SgdConfig& config,
                                              double* step_loss, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    const std::size_t rows_max = std::min(batch_size, order_length);
    workspace_.reserve(sizes_, rows_max);
    workspace_.x.resize(std::max(workspace_.x.size(), rows_max * sizes_[0]));
    if (loss_ == Loss::cross_entropy) {
        workspace_.labels.resize(std::max(workspace_.labels.size(), rows_max));
    } else {
        workspace_.targets.resize(std::max(workspace_.targets.size(), rows_max * sizes_.back()));
    }
    if (config.momentum != 0) allocate_momentum();
    for (std::size_t step = first; step < steps; ++step) {
        const std::size_t start = step * batch_size;
        const std::size_t rows = std::min(batch_size, order_length - start);
        gather_batch(x, y, order + start, rows);
        const double value = compute_gradients(workspace_, rows, workspace_.x.data(), batch_targets());
        step_loss[step] = value;
        if (!std::isfinite(value) || !apply_update(lrs[step], config)) return {step + 1, true};
        if (std::chrono::steady_clock::now() >= deadline) return {step + 1, false};
    }
    return {steps, false};
}

template struct Workspace<float>;
template struct Workspace<double>;
template class Mlp<float>;
template class Mlp<double>;

}  // namespace fusedmlp
