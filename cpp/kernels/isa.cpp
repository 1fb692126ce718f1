#include "isa.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace fusedmlp {

namespace {

bool cpu_runs(Isa isa) {
    switch (isa) {
        case Isa::generic:
            return true;
#if defined(FUSEDMLP_X86_KERNELS) && (defined(__GNUC__) || defined(__clang__))
        case Isa::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case Isa::avx512:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl");
#endif
        default:
            return false;
    }
}

std::atomic<int>& active_slot() {
    static std::atomic<int> slot{static_cast<int>(best_supported_isa())};
    return slot;
}

std::string valid_names() {
    std::string out;
    for (std::size_t i = 0; i < kIsaCount; ++i) out += (i ? ", " : "") + std::string(kIsaNames[i]);
    return out;
}

std::string supported_names() {
    std::string out;
    for (Isa isa : supported_isas()) out += (out.empty() ? "" : ", ") + std::string(isa_name(isa));
    return out;
}

}  // namespace

bool isa_supported(Isa isa) { return cpu_runs(isa); }

std::vector<Isa> supported_isas() {
    std::vector<Isa> out;
    for (std::size_t i = 0; i < kIsaCount; ++i)
        if (cpu_runs(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
    return out;
}

Isa best_supported_isa() { return supported_isas().back(); }

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
    if (!isa_supported(isa))
        throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                    "' is not supported by this CPU or build; supported: " + supported_names());
    active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

Isa parse_isa(const std::string& name) {
    for (std::size_t i = 0; i < kIsaCount; ++i)
        if (name == kIsaNames[i]) return static_cast<Isa>(i);
    throw std::invalid_argument("ISA must be one of " + valid_names() + "; got '" + name + "'");
}

const char* isa_name(Isa isa) { return kIsaNames[static_cast<std::size_t>(isa)]; }

void select_isa_from_environment() {
    const char* value = std::getenv("FUSEDMLP_ISA");
    if (value == nullptr || *value == '\0') return;
    try {
        set_active_isa(parse_isa(value));
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("FUSEDMLP_ISA: ") + e.what());
    }
}

}  // namespace fusedmlp
