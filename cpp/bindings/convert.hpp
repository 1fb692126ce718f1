// Conversions and checks shared by the binding units: names to enums, NumPy arrays to shapes.
// Every check here guards the kernels, which trust their arguments.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
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

// Raises Python's MemoryError with message (the GIL must be held, as in every check here).
[[noreturn]] inline void throw_memory_error(const std::string& message) {
    PyErr_SetString(PyExc_MemoryError, message.c_str());
    throw py::error_already_set();
}

// The most bytes one buffer may take: what std::vector and NumPy (Py_ssize_t) can index.
inline constexpr std::uint64_t kMaxBufferBytes = static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max());

// a * b in 64 bits, or MemoryError naming `what` when the product does not fit.
inline std::uint64_t checked_product(std::uint64_t a, std::uint64_t b, const std::string& what) {
    if (b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b)
        throw_memory_error(what + ": " + std::to_string(a) + " x " + std::to_string(b) +
                           " elements overflow a 64-bit size; no machine can hold that");
    return a * b;
}

// a + b in 64 bits, or MemoryError naming `what`.
inline std::uint64_t checked_sum(std::uint64_t a, std::uint64_t b, const std::string& what) {
    if (a > std::numeric_limits<std::uint64_t>::max() - b)
        throw_memory_error(what + ": the element count overflows a 64-bit size; no machine can hold that");
    return a + b;
}

// Elements of T that one buffer of `what` needs, checked against kMaxBufferBytes.
template <class T>
std::uint64_t require_buffer_fits(std::uint64_t elements, const std::string& what) {
    if (elements > kMaxBufferBytes / sizeof(T))
        throw_memory_error(what + ": a buffer of " + std::to_string(elements) + " elements of " +
                           std::to_string(sizeof(T)) + " bytes is more than any machine can address");
    return elements;
}

// Checks that every parameter-shaped buffer of a network with these layer sizes (W and b of
// each layer, their copies and momentum buffers) has a size that fits 64 bits and the address
// space, before anything is allocated: an impossible network is a MemoryError naming
// layer_sizes, never an overflowed size.
template <class T>
void require_network_fits(const std::vector<std::size_t>& sizes) {
    std::uint64_t total = 0;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
        const std::string what = "layer_sizes: layer " + std::to_string(l) + " (" + std::to_string(sizes[l]) +
                                 " x " + std::to_string(sizes[l + 1]) + ")";
        const std::uint64_t weights = require_buffer_fits<T>(checked_product(sizes[l], sizes[l + 1], what), what);
        total = checked_sum(total, checked_sum(weights, sizes[l + 1], what), "layer_sizes");
    }
    require_buffer_fits<T>(total, "layer_sizes: all parameters together");
}

// Checks that the per-pass workspace of a forward + backward pass over `rows` samples (each
// layer's pre-activation and activation, two gradient buffers of the widest layer, the
// gathered batch) has sizes that fit 64 bits and the address space. `what` names the argument
// that chose `rows` (X for a whole-batch gradient, batch_size for training).
template <class T>
void require_workspace_fits(const std::vector<std::size_t>& sizes, std::uint64_t rows, const std::string& what) {
    const std::uint64_t widest = *std::max_element(sizes.begin(), sizes.end());
    const std::string buffer = what + ": " + std::to_string(rows) + " rows of the widest layer (" +
                               std::to_string(widest) + ")";
    const std::uint64_t per_buffer = require_buffer_fits<T>(checked_product(rows, widest, buffer), buffer);
    // 2 per layer (z, h) + 2 gradients + the gathered batch and its targets: all at most per_buffer.
    const std::uint64_t buffers = 2 * (sizes.size() - 1) + 4;
    require_buffer_fits<T>(checked_product(per_buffer, buffers, buffer), what + ": the workspace of one pass");
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
    // The message is built only for a label that fails: this runs once per sample per epoch.
    for (py::ssize_t i = 0; i < labels.size(); ++i)
        if (p[i] < 0 || static_cast<std::size_t>(p[i]) >= k)
            require(false, std::string(name) + ": class labels must lie in [0, " + std::to_string(k) + "), got " +
                               std::to_string(p[i]));
}

}  // namespace fusedmlp::bindings
