// Conversions and checks shared by the binding units: names to enums, NumPy arrays to shapes.
// Every check here guards the kernels, which trust their arguments.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernels/activation.hpp"
#include "../kernels/loss.hpp"

namespace fusedmlp::bindings {

namespace py = pybind11;

// C-contiguous arrays of exactly T: the Python layer converts, so nothing is copied here.
template <class T>
using Array = py::array_t<T, py::array::c_style>;
using Labels = py::array_t<std::int64_t, py::array::c_style>;

inline void require(bool condition, const std::string& message) {
    if (!condition) throw std::invalid_argument(message);
}

template <std::size_t N>
std::string join_names(const char* const (&names)[N]) {
    std::string out;
    for (std::size_t i = 0; i < N; ++i) out += (i ? ", " : "") + std::string(names[i]);
    return out;
}

template <class Enum, std::size_t N>
Enum parse_name(const std::string& value, const char* const (&names)[N], const char* what) {
    for (std::size_t i = 0; i < N; ++i)
        if (value == names[i]) return static_cast<Enum>(i);
    throw std::invalid_argument(std::string(what) + " must be one of " + join_names(names) + "; got '" + value +
                                "'");
}

inline Activation parse_activation(const std::string& name) {
    return parse_name<Activation>(name, kActivationNames, "activation");
}

inline Loss parse_loss(const std::string& name) { return parse_name<Loss>(name, kLossNames, "loss"); }

inline std::string shape_string(const py::array& a) {
    std::string out = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) out += (i ? ", " : "") + std::to_string(a.shape(i));
    return out + (a.ndim() == 1 ? ",)" : ")");
}

// Checks a's shape; a dimension of -1 matches any size.
inline void require_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
    if (ok) return;
    std::string expected = "(";
    for (std::size_t i = 0; i < shape.size(); ++i)
        expected += (i ? ", " : "") + (shape[i] < 0 ? std::string("any") : std::to_string(shape[i]));
    expected += shape.size() == 1 ? ",)" : ")";
    throw std::invalid_argument(std::string(name) + ": expected shape " + expected + ", got " + shape_string(a));
}

inline void require_labels_below(const Labels& labels, std::size_t k, const char* name) {
    const std::int64_t* p = labels.data();
    for (py::ssize_t i = 0; i < labels.size(); ++i)
        require(p[i] >= 0 && static_cast<std::size_t>(p[i]) < k,
                std::string(name) + ": class labels must lie in [0, " + std::to_string(k) + "), got " +
                    std::to_string(p[i]));
}

}  // namespace fusedmlp::bindings
