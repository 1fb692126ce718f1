// Single-op entry points: each native kernel callable on its own, with the same signature as
// its counterpart in fusedmlp.reference, so that tests compare the two op by op.
#include <pybind11/stl.h>

#include <algorithm>

#include "../kernels/dense.hpp"
#include "../kernels/sgd.hpp"
#include "convert.hpp"

namespace fusedmlp::bindings {

namespace {

template <class T>
Array<T> empty_like_shape(std::size_t rows, std::size_t cols) {
    return Array<T>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
}

template <class T>
void bind_ops_for(py::module_& m) {
    m.def(
        "activation_forward",
        [](const std::string& name, const Array<T>& z) {
            const Activation act = parse_activation(name);
            Array<T> h(std::vector<py::ssize_t>(z.shape(), z.shape() + z.ndim()));
            py::gil_scoped_release release;
            activation_forward(act, static_cast<std::size_t>(z.size()), z.data(), h.mutable_data());
            return h;
        },
        py::arg("name"), py::arg("z").noconvert());

    m.def(
        "activation_derivative",
        [](const std::string& name, const Array<T>& z, const Array<T>& h) {
            const Activation act = parse_activation(name);
            std::vector<py::ssize_t> shape(z.shape(), z.shape() + z.ndim());
            require_shape(h, shape, "h");
            Array<T> out(shape);
            py::gil_scoped_release release;
            activation_derivative(act, static_cast<std::size_t>(z.size()), z.data(), h.data(), out.mutable_data());
            return out;
        },
        py::arg("name"), py::arg("z").noconvert(), py::arg("h").noconvert());

    m.def(
        "dense_forward",
        [](const Array<T>& x, const Array<T>& w, const Array<T>& b, const std::string& activation) {
            const Activation act = parse_activation(activation);
            require_shape(x, {-1, -1}, "x");
            require_shape(w, {x.shape(1), -1}, "W");
            require_shape(b, {w.shape(1)}, "b");
            const DenseShape s{static_cast<std::size_t>(x.shape(0)), static_cast<std::size_t>(w.shape(0)),
                               static_cast<std::size_t>(w.shape(1))};
            Array<T> z = empty_like_shape<T>(s.rows, s.fan_out);
            Array<T> h = empty_like_shape<T>(s.rows, s.fan_out);
            {
                py::gil_scoped_release release;
                dense_forward(s, x.data(), w.data(), b.data(), act, z.mutable_data(), h.mutable_data());
            }
            return py::make_tuple(z, h);
        },
        py::arg("x").noconvert(), py::arg("W").noconvert(), py::arg("b").noconvert(), py::arg("activation"));

    m.def(
        "dense_backward",
        [](const Array<T>& dh, const Array<T>& x, const Array<T>& w, const Array<T>& z, const Array<T>& h,
           const std::string& activation, bool need_dx) {
            const Activation act = parse_activation(activation);
            require_shape(x, {-1, -1}, "x");
            require_shape(w, {x.shape(1), -1}, "W");
            for (const auto* a : {&dh, &z, &h}) require_shape(*a, {x.shape(0), w.shape(1)}, "dh, z and h");
            const DenseShape s{static_cast<std::size_t>(x.shape(0)), static_cast<std::size_t>(w.shape(0)),
                               static_cast<std::size_t>(w.shape(1))};
            Array<T> dz = empty_like_shape<T>(s.rows, s.fan_out);
            Array<T> dw = empty_like_shape<T>(s.fan_in, s.fan_out);
            Array<T> db(static_cast<py::ssize_t>(s.fan_out));
            py::object dx = py::none();
            T* dx_data = nullptr;
            std::vector<T> w_t;
            if (need_dx) {
                Array<T> dx_array = empty_like_shape<T>(s.rows, s.fan_in);
                dx_data = dx_array.mutable_data();
                dx = dx_array;
                w_t.resize(s.fan_in * s.fan_out);
            }
            {
                py::gil_scoped_release release;
                dense_backward(s, dh.data(), x.data(), w.data(), z.data(), h.data(), act, dz.mutable_data(),
                               dw.mutable_data(), db.mutable_data(), dx_data, w_t.data());
            }
            return py::make_tuple(dx, dw, db);
        },
        py::arg("dh").noconvert(), py::arg("x").noconvert(), py::arg("W").noconvert(), py::arg("z").noconvert(),
        py::arg("h").noconvert(), py::arg("activation"), py::arg("need_dx") = true);

    m.def(
        "dense_input_grad",
        [](const Array<T>& dz, const Array<T>& w, const Array<T>& z_prev, const Array<T>& h_prev,
           const std::string& prev_activation) {
            const Activation act = parse_activation(prev_activation);
            require_shape(w, {-1, -1}, "W");
            require_shape(dz, {-1, w.shape(1)}, "dz");
            require_shape(z_prev, {dz.shape(0), w.shape(0)}, "z_prev");
            require_shape(h_prev, {dz.shape(0), w.shape(0)}, "h_prev");
            const DenseShape s{static_cast<std::size_t>(dz.shape(0)), static_cast<std::size_t>(w.shape(0)),
                               static_cast<std::size_t>(w.shape(1))};
            Array<T> dz_prev = empty_like_shape<T>(s.rows, s.fan_in);
            {
                py::gil_scoped_release release;
                dense_input_grad<T>(s, dz.data(), w.data(), act, z_prev.data(), h_prev.data(),
                                    dz_prev.mutable_data(), nullptr);
            }
            return dz_prev;
        },
        py::arg("dz").noconvert(), py::arg("W").noconvert(), py::arg("z_prev").noconvert(),
        py::arg("h_prev").noconvert(), py::arg("prev_activation"),
        "(dz @ W.T) * f'(z_prev): the previous layer's dL/dz, derivative fused into the product.");

    m.def(
        "dense_weight_grads_sgd",
        [](const Array<T>& x, const Array<T>& dz, Array<T> w, Array<T> b, Array<T> w_buf, Array<T> b_buf, double lr,
           double momentum, bool nesterov, double weight_decay, bool first_step) {
            require_shape(x, {-1, -1}, "x");
            require_shape(w, {x.shape(1), -1}, "W");
            require_shape(dz, {x.shape(0), w.shape(1)}, "dz");
            require_shape(b, {w.shape(1)}, "b");
            require_shape(w_buf, {w.shape(0), w.shape(1)}, "w_buf");
            require_shape(b_buf, {w.shape(1)}, "b_buf");
            const DenseShape s{static_cast<std::size_t>(x.shape(0)), static_cast<std::size_t>(w.shape(0)),
                               static_cast<std::size_t>(w.shape(1))};
            T* wp = w.mutable_data();
            T* bp = b.mutable_data();
            T* wm = w_buf.mutable_data();
            T* bm = b_buf.mutable_data();
            const DenseSgdParams<T> params{wp, wm, wp, wm, bp, bm, bp, bm};
            const SgdConfig config{momentum, nesterov, weight_decay};
            py::gil_scoped_release release;
            return dense_weight_grads_sgd<T>(s, x.data(), dz.data(), params, lr, config, first_step);
        },
        py::arg("x").noconvert(), py::arg("dz").noconvert(), py::arg("W").noconvert(), py::arg("b").noconvert(),
        py::arg("w_buf").noconvert(), py::arg("b_buf").noconvert(), py::arg("lr"), py::arg("momentum"),
        py::arg("nesterov"), py::arg("weight_decay"), py::arg("first_step"),
        "One SGD step on W, b (and their momentum buffers) in place from dW = x.T @ dz and db = dz.sum(0), "
        "never stored; returns whether every new parameter is finite.");

    m.def(
        "loss_and_grad",
        [](const std::string& loss_name, const Array<T>& z, const py::array& y) {
            const Loss loss = parse_loss(loss_name);
            require_shape(z, {-1, -1}, "z");
            const std::size_t n = static_cast<std::size_t>(z.shape(0));
            const std::size_t k = static_cast<std::size_t>(z.shape(1));
            Targets<T> targets;
            Labels labels;
            Array<T> values;
            if (loss == Loss::cross_entropy) {
                require(py::isinstance<Labels>(y), "y: expected C-contiguous int64 class labels");
                labels = y.cast<Labels>();
                require_shape(labels, {z.shape(0)}, "y");
                require_labels_below(labels, k, "y");
                targets.labels = labels.data();
            } else {
                require(py::isinstance<Array<T>>(y), "y: expected a C-contiguous array of the logits' dtype");
                values = y.cast<Array<T>>();
                require_shape(values, {z.shape(0), z.shape(1)}, "y");
                targets.values = values.data();
            }
            Array<T> dz = empty_like_shape<T>(n, k);
            double value;
            {
                py::gil_scoped_release release;
                value = loss_and_grad(loss, n, k, z.data(), targets, dz.mutable_data());
            }
            return py::make_tuple(value, dz);
        },
        py::arg("loss"), py::arg("z").noconvert(), py::arg("y"));

    m.def(
        "output_activation",
        [](const std::string& loss_name, const Array<T>& z) {
            const Loss loss = parse_loss(loss_name);
            require_shape(z, {-1, -1}, "z");
            Array<T> out = empty_like_shape<T>(z.shape(0), z.shape(1));
            std::copy_n(z.data(), z.size(), out.mutable_data());
            apply_output_activation(loss, z.shape(0), z.shape(1), out.mutable_data());
            return out;
        },
        py::arg("loss"), py::arg("z").noconvert());

    m.def(
        "sgd_update",
        [](Array<T> param, const Array<T>& grad, Array<T> buf, double lr, double momentum, bool nesterov,
           double weight_decay, bool first_step) {
            std::vector<py::ssize_t> shape(param.shape(), param.shape() + param.ndim());
            require_shape(grad, shape, "grad");
            require_shape(buf, shape, "buf");
            T* param_data = param.mutable_data();
            T* buf_data = buf.mutable_data();
            const SgdConfig config{momentum, nesterov, weight_decay};
            py::gil_scoped_release release;
            sgd_update(static_cast<std::size_t>(param.size()), param_data, grad.data(), buf_data, lr, config,
                       first_step);
        },
        py::arg("param").noconvert(), py::arg("grad").noconvert(), py::arg("buf").noconvert(), py::arg("lr"),
        py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"), py::arg("first_step"));
}

}  // namespace

void bind_ops(py::module_& m) {
    bind_ops_for<float>(m);
    bind_ops_for<double>(m);
}

}  // namespace fusedmlp::bindings
