// Which instruction set the dense kernels use: the best one this CPU supports, unless the
// environment variable FUSEDMLP_ISA or set_active_isa() chooses another it also supports.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace fusedmlp {

enum class Isa { generic, avx2, avx512 };

inline constexpr const char* kIsaNames[] = {"generic", "avx2", "avx512"};
inline constexpr std::size_t kIsaCount = sizeof(kIsaNames) / sizeof(kIsaNames[0]);

// Whether this build has kernels for isa and this CPU can run them.
bool isa_supported(Isa isa);
// The supported ones, from the most portable to the fastest.
std::vector<Isa> supported_isas();
Isa best_supported_isa();

Isa active_isa();
// Throws std::invalid_argument when isa is not supported here.
void set_active_isa(Isa isa);

// Throws std::invalid_argument naming the valid names.
Isa parse_isa(const std::string& name);
const char* isa_name(Isa isa);

// Applies FUSEDMLP_ISA when it is set and not empty; throws std::invalid_argument for an
// unknown name or one this CPU cannot run.
void select_isa_from_environment();

}  // namespace fusedmlp
