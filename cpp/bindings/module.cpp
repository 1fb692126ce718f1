// fusedmlp._native: the compiled backend. The Python layer validates user input; these
// bindings re-check what the kernels rely on, release the GIL, and convert arrays.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>
#include <string>

#include "../kernels/activation.hpp"
#include "../kernels/isa.hpp"
#include "../kernels/loss.hpp"
#include "../kernels/threads.hpp"

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
    // A bad FUSEDMLP_ISA fails the import with its message (pybind11 raises ImportError).
    fusedmlp::select_isa_from_environment();
    m.def(
        "isa", [] { return std::string(fusedmlp::isa_name(fusedmlp::active_isa())); },
        "The instruction set the dense kernels use now: 'avx512', 'avx2' or 'generic'.");
    m.def(
        "available_isas",
        [] {
            std::vector<std::string> names;
            for (fusedmlp::Isa isa : fusedmlp::supported_isas()) names.emplace_back(fusedmlp::isa_name(isa));
            return names;
        },
        "The instruction sets this CPU and build can run, from the most portable to the fastest.");
    m.def(
        "set_isa", [](const std::string& name) { fusedmlp::set_active_isa(fusedmlp::parse_isa(name)); },
        py::arg("name"),
        "Use the kernels for `name` from now on (ValueError if unknown or not supported here).");
    m.def(
        "set_num_threads", [](int n) { fusedmlp::set_max_threads(n); }, py::arg("n"),
        "The most threads a kernel uses (ValueError for n < 1). Small products use one thread.");
    m.def(
        "get_num_threads", [] { return fusedmlp::max_threads(); },
        "The most threads a kernel uses: OMP_NUM_THREADS (or the core count) until set_num_threads.");
    fusedmlp::bindings::bind_ops(m);
    fusedmlp::bindings::bind_mlp(m);
}
