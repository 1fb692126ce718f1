// Checks shared by the bindings of every native network (the CPU Mlp and the CudaMlp): both
// offer layer_sizes(), layer_count() and loss().
#pragma once

#include <string>

#include "../kernels/loss.hpp"
#include "convert.hpp"

namespace fusedmlp::bindings {

// The targets y of n samples, checked against the network's loss: int64 labels (n,) in [0, k)
// for cross_entropy, else values of T shaped (n, k). Holds the arrays the pointers refer to.
template <class T>
class TargetArrays {
public:
    template <class Net>
    TargetArrays(const Net& net, const py::array& y, py::ssize_t n) {
        const std::size_t k = net.layer_sizes().back();
        if (net.loss() == Loss::cross_entropy) {
            require(py::isinstance<Labels>(y), "y: expected C-contiguous int64 class labels");
            labels_ = y.cast<Labels>();
            require_shape(labels_, {n}, "y");
            require_labels_below(labels_, k, "y");
            targets_.labels = labels_.data();
        } else {
            require(py::isinstance<Array<T>>(y), "y: expected a C-contiguous array of the model's dtype");
            values_ = y.cast<Array<T>>();
            require_shape(values_, {n, static_cast<py::ssize_t>(k)}, "y");
            targets_.values = values_.data();
        }
    }
    Targets<T> targets() const { return targets_; }

private:
    Labels labels_;
    Array<T> values_;
    Targets<T> targets_;
};

template <class Net, class T>
void require_features(const Net& net, const Array<T>& x) {
    require_shape(x, {-1, static_cast<py::ssize_t>(net.layer_sizes()[0])}, "X");
}

template <class Net>
void require_layer(const Net& net, std::size_t layer) {
    require(layer < net.layer_count(), "layer: expected an index below " + std::to_string(net.layer_count()) +
                                           ", got " + std::to_string(layer));
}

}  // namespace fusedmlp::bindings
