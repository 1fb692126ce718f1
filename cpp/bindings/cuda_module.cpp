// fusedmlp._cuda: the CUDA backend's network. Compiled by the host compiler: it sees only the
// plain C++ interface of cpp/cuda/cuda_mlp.hpp. Checks what the kernels rely on, converts
// arrays, and releases the GIL around every device call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../cuda/cuda_mlp.hpp"
#include "convert.hpp"
#include "network_checks.hpp"

namespace fusedmlp::bindings {

namespace {

using cuda::CudaMlp;

template <class T>
std::pair<py::ssize_t, py::ssize_t> layer_shape(const CudaMlp<T>& net, std::size_t layer) {
    const auto& sizes = net.layer_sizes();
    return {static_cast<py::ssize_t>(sizes[layer]), static_cast<py::ssize_t>(sizes[layer + 1])};
}

// Reads or writes one layer's pair of arrays through the given member (parameters or momentum).
template <class T, void (CudaMlp<T>::*Get)(std::size_t, T*, T*) const>
py::tuple get_pair(const CudaMlp<T>& net, std::size_t layer) {
    require_layer(net, layer);
    const auto [fan_in, fan_out] = layer_shape(net, layer);
    Array<T> w({fan_in, fan_out});
    Array<T> b(fan_out);
    T* w_data = w.mutable_data();
    T* b_data = b.mutable_data();
    {
        py::gil_scoped_release release;
        (net.*Get)(layer, w_data, b_data);
    }
    return py::make_tuple(w, b);
}

template <class T, void (CudaMlp<T>::*Set)(std::size_t, const T*, const T*)>
void set_pair(CudaMlp<T>& net, std::size_t layer, const Array<T>& w, const Array<T>& b) {
    require_layer(net, layer);
    const auto [fan_in, fan_out] = layer_shape(net, layer);
    require_shape(w, {fan_in, fan_out}, "W");
    require_shape(b, {fan_out}, "b");
    py::gil_scoped_release release;
    (net.*Set)(layer, w.data(), b.data());
}

// Checks an epoch's arguments and queues it. The order's indices are checked where they are
// narrowed to the device's int (CudaMlp::begin_epoch, std::invalid_argument: a ValueError).
template <class T>
void begin_epoch(CudaMlp<T>& net, const Labels& order, std::size_t batch_size, bool drop_last,
                 const Array<double>& lrs, double momentum, bool nesterov, double weight_decay) {
    require(batch_size >= 1, "batch_size: expected at least 1");
    require_shape(order, {-1}, "order");
    require_shape(lrs, {-1}, "lrs");
    const std::size_t length = static_cast<std::size_t>(order.size());
    const std::size_t steps = drop_last ? length / batch_size : (length + batch_size - 1) / batch_size;
    require(static_cast<std::size_t>(lrs.size()) == steps,
            "lrs: expected " + std::to_string(steps) + " learning rates, got " + std::to_string(lrs.size()));
    require(momentum >= 0 && momentum < 1, "momentum: expected a value in [0, 1)");
    py::gil_scoped_release release;
    net.begin_epoch(order.data(), length, batch_size, steps, lrs.data(), SgdConfig{momentum, nesterov, weight_decay});
}

// Waits for the queued epoch: (step_loss, diverged).
template <class T>
py::tuple finish_epoch(CudaMlp<T>& net) {
    cuda::EpochResult result;
    {
        py::gil_scoped_release release;
        result = net.end_epoch();
    }
    Array<double> step_loss(static_cast<py::ssize_t>(result.steps_run));
    std::copy_n(result.step_loss.begin(), result.steps_run, step_loss.mutable_data());
    return py::make_tuple(step_loss, result.diverged);
}

template <class T>
void bind_cuda_mlp(py::module_& m, const char* name) {
    py::class_<CudaMlp<T>>(m, name)
        .def(py::init([](const std::vector<std::size_t>& sizes, const std::string& activation,
                         const std::string& loss) {
                 require(sizes.size() >= 2, "layer_sizes: expected at least an input and an output size");
                 for (std::size_t s : sizes) require(s >= 1, "layer_sizes: every size must be at least 1");
                 const std::size_t largest = *std::max_element(sizes.begin(), sizes.end());
                 require(largest < (std::size_t(1) << 30), "layer_sizes: every size must be below 2^30");
                 const Activation a = parse_activation(activation);
                 const Loss l = parse_loss(loss);
                 py::gil_scoped_release release;
                 return new CudaMlp<T>(sizes, a, l);
             }),
             py::arg("layer_sizes"), py::arg("activation"), py::arg("loss"))
        .def_property_readonly("layer_sizes", &CudaMlp<T>::layer_sizes)
        .def_property_readonly("fused_eligible", &CudaMlp<T>::fused_eligible,
                               "whether every width fits the fused narrow-network kernel")
        .def_property("fused", &CudaMlp<T>::fused, &CudaMlp<T>::use_fused,
                      "whether training runs the fused kernel (else the tiled GEMMs)")
        .def("epoch_kernel", &CudaMlp<T>::epoch_kernel, py::arg("rows"), py::arg("momentum"),
             "what runs an epoch of batches of up to `rows` rows: 'block', 'cluster', 'fused steps' or 'tiled steps'")
        .def("get_layer", &get_pair<T, &CudaMlp<T>::get_layer>, py::arg("layer"))
        .def("set_layer", &set_pair<T, &CudaMlp<T>::set_layer>, py::arg("layer"), py::arg("W").noconvert(),
             py::arg("b").noconvert())
        .def("get_momentum", &get_pair<T, &CudaMlp<T>::get_momentum>, py::arg("layer"))
        .def("set_momentum", &set_pair<T, &CudaMlp<T>::set_momentum>, py::arg("layer"), py::arg("W").noconvert(),
             py::arg("b").noconvert())
        .def_property("optimizer_started", &CudaMlp<T>::optimizer_started, &CudaMlp<T>::set_optimizer_started)
        .def("reset_optimizer", &CudaMlp<T>::reset_optimizer, py::call_guard<py::gil_scoped_release>())
        .def(
            "forward_logits",
            [](const CudaMlp<T>& net, const Array<T>& x) {
                require_features(net, x);
                Array<T> out({x.shape(0), static_cast<py::ssize_t>(net.layer_sizes().back())});
                T* out_data = out.mutable_data();
                py::gil_scoped_release release;
                net.forward_logits(static_cast<std::size_t>(x.shape(0)), x.data(), out_data);
                return out;
            },
            py::arg("X").noconvert())
        .def(
            "outputs",
            [](const CudaMlp<T>& net, const Array<T>& x) {
                require_features(net, x);
                Array<T> out({x.shape(0), static_cast<py::ssize_t>(net.layer_sizes().back())});
                T* out_data = out.mutable_data();
                py::gil_scoped_release release;
                net.outputs(static_cast<std::size_t>(x.shape(0)), x.data(), out_data);
                return out;
            },
            py::arg("X").noconvert())
        .def(
            "loss_and_grad",
            [](const CudaMlp<T>& net, const Array<T>& x, const py::array& y) {
                require_features(net, x);
                require(x.shape(0) >= 1, "X: expected at least one sample");
                require(x.shape(0) < (py::ssize_t(1) << 31), "X: expected fewer than 2^31 samples");
                const TargetArrays<T> targets(net, y, x.shape(0));
                py::list dw_list, db_list;
                std::vector<T*> dw, db;
                for (std::size_t l = 0; l < net.layer_count(); ++l) {
                    const auto [fan_in, fan_out] = layer_shape(net, l);
                    Array<T> w({fan_in, fan_out});
                    Array<T> b(fan_out);
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
        .def(
            "upload_training_set",
            [](CudaMlp<T>& net, const Array<T>& x, const py::array& y) {
                require_features(net, x);
                require(x.shape(0) < (py::ssize_t(1) << 31), "X: expected fewer than 2^31 samples");
                const TargetArrays<T> targets(net, y, x.shape(0));
                py::gil_scoped_release release;
                net.upload_training_set(static_cast<std::size_t>(x.shape(0)), x.data(), targets.targets());
            },
            py::arg("X").noconvert(), py::arg("y"))
        .def_property_readonly("training_rows", &CudaMlp<T>::training_rows)
        .def("start_epoch", &begin_epoch<T>, py::arg("order").noconvert(), py::arg("batch_size"),
             py::arg("drop_last"), py::arg("lrs").noconvert(), py::arg("momentum"), py::arg("nesterov"),
             py::arg("weight_decay"),
             "queues one epoch and returns at once; finish_epoch waits for it and returns its result")
        .def("finish_epoch", &finish_epoch<T>, "(step_loss, diverged) of the epoch start_epoch queued")
        .def(
            "train_epoch",
            [](CudaMlp<T>& net, const Labels& order, std::size_t batch_size, bool drop_last, const Array<double>& lrs,
               double momentum, bool nesterov, double weight_decay) {
                begin_epoch(net, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay);
                return finish_epoch(net);
            },
            py::arg("order").noconvert(), py::arg("batch_size"), py::arg("drop_last"), py::arg("lrs").noconvert(),
            py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"),
            "start_epoch, then finish_epoch: (step_loss, diverged)");
}

}  // namespace

}  // namespace fusedmlp::bindings

PYBIND11_MODULE(_cuda, m) {
    namespace py = pybind11;
    m.doc() = "fusedmlp's CUDA backend";
    m.def(
        "device_status",
        [] {
            const fusedmlp::cuda::DeviceStatus s = fusedmlp::cuda::device_status();
            return py::make_tuple(s.ok, s.ok ? s.name : s.reason);
        },
        "(True, device name) when a usable CUDA device exists, else (False, why not)");
    m.def(
        "device_has_clusters", [] { return fusedmlp::cuda::device_status().clusters(); },
        "whether the CUDA device has thread-block clusters (compute capability 9.0 or later)");
    m.def("forceable_gemm_tiles", &fusedmlp::cuda::forceable_gemm_tiles,
          "the FUSEDMLP_CUDA_TILE values that force a float GEMM tile on this device and build");
    fusedmlp::bindings::bind_cuda_mlp<float>(m, "MlpFloat32");
    fusedmlp::bindings::bind_cuda_mlp<double>(m, "MlpFloat64");
}
