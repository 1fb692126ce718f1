// The native network: parameters and optimizer state held in C++, whole epochs run with the
// GIL released.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "../kernels/mlp.hpp"
#include "convert.hpp"
#include "network_checks.hpp"

namespace fusedmlp::bindings {

namespace {

// How long native training runs between checks for Ctrl-C (Python runs signal handlers only
// when the main thread holds the GIL).
constexpr std::chrono::milliseconds kInterruptCheckInterval(50);

template <class T>
void bind_mlp_for(py::module_& m, const char* name) {
    py::class_<Mlp<T>>(m, name)
        .def(py::init([](const std::vector<std::size_t>& sizes, const std::string& activation,
                         const std::string& loss) {
                 require(sizes.size() >= 2, "layer_sizes: expected at least an input and an output size");
                 for (std::size_t s : sizes) require(s >= 1, "layer_sizes: every size must be at least 1");
                 // Every buffer is at most (largest size)^2 elements: keep that product exact.
                 const std::size_t largest = *std::max_element(sizes.begin(), sizes.end());
                 require(largest <= (std::size_t(1) << 31), "layer_sizes: every size must be at most 2^31");
                 require_network_fits<T>(sizes);
                 return new Mlp<T>(sizes, parse_activation(activation), parse_loss(loss));
             }),
             py::arg("layer_sizes"), py::arg("activation"), py::arg("loss"))
        .def_property_readonly("layer_sizes", &Mlp<T>::layer_sizes)
        .def("get_layer",
             [](const Mlp<T>& net, std::size_t layer) {
                 require_layer(net, layer);
                 const auto& sizes = net.layer_sizes();
                 Array<T> w({static_cast<py::ssize_t>(sizes[layer]), static_cast<py::ssize_t>(sizes[layer + 1])});
                 Array<T> b(static_cast<py::ssize_t>(sizes[layer + 1]));
                 net.get_layer(layer, w.mutable_data(), b.mutable_data());
                 return py::make_tuple(w, b);
             })
        .def(
            "set_layer",
            [](Mlp<T>& net, std::size_t layer, const Array<T>& w, const Array<T>& b) {
                require_layer(net, layer);
                const auto& sizes = net.layer_sizes();
                require_shape(w, {static_cast<py::ssize_t>(sizes[layer]), static_cast<py::ssize_t>(sizes[layer + 1])},
                              "W");
                require_shape(b, {static_cast<py::ssize_t>(sizes[layer + 1])}, "b");
                py::gil_scoped_release release;
                net.set_layer(layer, w.data(), b.data());
            },
            py::arg("layer"), py::arg("W").noconvert(), py::arg("b").noconvert())
        .def(
            "forward_logits",
            [](const Mlp<T>& net, const Array<T>& x) {
                require_features(net, x);
                Array<T> out({x.shape(0), static_cast<py::ssize_t>(net.layer_sizes().back())});
                T* out_data = out.mutable_data();
                py::gil_scoped_release release;
                net.forward_logits(static_cast<std::size_t>(x.shape(0)), x.data(), out_data);
                return out;
            },
            py::arg("X").noconvert())
        .def(
            "loss_and_grad",
            [](const Mlp<T>& net, const Array<T>& x, const py::array& y) {
                require_features(net, x);
                require(x.shape(0) >= 1, "X: expected at least one sample");
                require_workspace_fits<T>(net.layer_sizes(), static_cast<std::uint64_t>(x.shape(0)), "X");
                const TargetArrays<T> targets(net, y, x.shape(0));
                const auto& sizes = net.layer_sizes();
                py::list dw_list, db_list;
                std::vector<T*> dw, db;
                for (std::size_t l = 0; l < net.layer_count(); ++l) {
                    Array<T> w({static_cast<py::ssize_t>(sizes[l]), static_cast<py::ssize_t>(sizes[l + 1])});
                    Array<T> b(static_cast<py::ssize_t>(sizes[l + 1]));
                    dw.push_back(w.mutable_data());
                    db.push_back(b.mutable_data());
                    dw_list.append(w);
                    db_list.append(b);
                }
                double value;
                {
                    py::gil_scoped_release release;
                    value = net.loss_and_grad(static_cast<std::size_t>(x.shape(0)), x.data(), targets.targets(),
                                              dw.data(), db.data());
                }
                return py::make_tuple(value, dw_list, db_list);
            },
            py::arg("X").noconvert(), py::arg("y"))
        .def("reset_optimizer", &Mlp<T>::reset_optimizer)
        .def("get_optimizer_state",
             [](const Mlp<T>& net, std::size_t layer) {
                 require_layer(net, layer);
                 const auto& sizes = net.layer_sizes();
                 Array<T> w({static_cast<py::ssize_t>(sizes[layer]), static_cast<py::ssize_t>(sizes[layer + 1])});
                 Array<T> b(static_cast<py::ssize_t>(sizes[layer + 1]));
                 const bool started = net.get_optimizer_state(layer, w.mutable_data(), b.mutable_data());
                 return py::make_tuple(w, b, started);
             })
        .def(
            "set_optimizer_state",
            [](Mlp<T>& net, std::size_t layer, const Array<T>& w, const Array<T>& b, bool started) {
                require_layer(net, layer);
                const auto& sizes = net.layer_sizes();
                require_shape(w, {static_cast<py::ssize_t>(sizes[layer]), static_cast<py::ssize_t>(sizes[layer + 1])},
                              "w_momentum");
                require_shape(b, {static_cast<py::ssize_t>(sizes[layer + 1])}, "b_momentum");
                py::gil_scoped_release release;
                net.set_optimizer_state(layer, w.data(), b.data(), started);
            },
            py::arg("layer"), py::arg("w_momentum").noconvert(), py::arg("b_momentum").noconvert(),
            py::arg("started"))
        .def(
            "train_epoch",
            [](Mlp<T>& net, const Array<T>& x, const py::array& y, const Labels& order, std::size_t batch_size,
               bool drop_last, const Array<double>& lrs, double momentum, bool nesterov, double weight_decay) {
                require_features(net, x);
                const TargetArrays<T> targets(net, y, x.shape(0));
                require(batch_size >= 1, "batch_size: expected at least 1");
                require_shape(order, {-1}, "order");
                require_shape(lrs, {-1}, "lrs");
                const std::size_t length = static_cast<std::size_t>(order.size());
                require_workspace_fits<T>(net.layer_sizes(), std::min<std::uint64_t>(batch_size, length), "batch_size");
                const std::int64_t* idx = order.data();
                for (std::size_t i = 0; i < length; ++i)
                    if (idx[i] < 0 || idx[i] >= x.shape(0)) require(false, "order: indices must lie in [0, n)");
                const std::size_t steps = drop_last ? length / batch_size : (length + batch_size - 1) / batch_size;
                require(static_cast<std::size_t>(lrs.size()) == steps,
                        "lrs: expected " + std::to_string(steps) + " learning rates, got " + std::to_string(lrs.size()));
                require(momentum >= 0 && momentum < 1, "momentum: expected a value in [0, 1)");
                Array<double> step_loss(static_cast<py::ssize_t>(steps));
                double* step_loss_data = step_loss.mutable_data();
                const SgdConfig config{momentum, nesterov, weight_decay};
                typename Mlp<T>::Progress progress{0, false};
                while (progress.next_step < steps && !progress.diverged) {
                    {
                        py::gil_scoped_release release;
                        progress = net.train_steps(x.data(), targets.targets(), idx, length, batch_size,
                                                   progress.next_step, steps, lrs.data(), config, step_loss_data,
                                                   std::chrono::steady_clock::now() + kInterruptCheckInterval);
                    }
                    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                }
                if (progress.next_step < steps) step_loss = Array<double>(static_cast<py::ssize_t>(progress.next_step), step_loss_data);
                return py::make_tuple(step_loss, progress.diverged);
            },
            py::arg("X").noconvert(), py::arg("y"), py::arg("order").noconvert(), py::arg("batch_size"),
            py::arg("drop_last"), py::arg("lrs").noconvert(), py::arg("momentum"), py::arg("nesterov"),
            py::arg("weight_decay"));
}

}  // namespace

void bind_mlp(py::module_& m) {
    bind_mlp_for<float>(m, "MlpFloat32");
    bind_mlp_for<double>(m, "MlpFloat64");
}

}  // namespace fusedmlp::bindings
