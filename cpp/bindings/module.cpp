// fusedmlp._native: the compiled backend. The Python layer validates user input; these
// bindings re-check what the kernels rely on, release the GIL, and convert arrays.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>
#include <string>

#include "../kernels/activation.hpp"
#include "../kernels/loss.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fusedmlp::bindings {
void bind_ops(pybind11::module_& m);
void bind_mlp(pybind11::module_& m);
}  // namespace fusedmlp::bindings

PYBIND11_MODULE(_native, m) {
    namespace py = pybind11;
    m.doc() = "fusedmlp's native CPU kernels";
    m.attr("ACTIVATIONS") = py::tuple(py::cast(std::vector<std::string>(
        std::begin(fusedmlp::kActivationNames), std::end(fusedmlp::kActivationNames))));
    m.attr("LOSSES") = py::tuple(
        py::cast(std::vector<std::string>(std::begin(fusedmlp::kLossNames), std::end(fusedmlp::kLossNames))));
#ifdef _OPENMP
    m.attr("OPENMP") = true;
#else
    m.attr("OPENMP") = false;
#endif
    fusedmlp::bindings::bind_ops(m);
    fusedmlp::bindings::bind_mlp(m);
}
