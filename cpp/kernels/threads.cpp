#include "threads.hpp"

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fusedmlp {

namespace {

// Measured on a 2-core EPYC: below ~0.5 M multiply-adds (tens of microseconds), waking a
// second thread costs as much as it saves.
constexpr std::size_t kParallelMultiplyAdds = std::size_t(1) << 19;

std::atomic<int>& thread_slot() {
#ifdef _OPENMP
    static std::atomic<int> slot{omp_get_max_threads()};
#else
    static std::atomic<int> slot{1};
#endif
    return slot;
}

}  // namespace

int max_threads() { return thread_slot().load(std::memory_order_relaxed); }

void set_max_threads(int n) {
    if (n < 1) throw std::invalid_argument("num_threads must be at least 1, got " + std::to_string(n));
    thread_slot().store(n, std::memory_order_relaxed);
}

int threads_for(std::size_t multiply_adds, std::size_t parts) {
    const int limit = max_threads();
    if (limit <= 1 || parts < 2 || multiply_adds < kParallelMultiplyAdds) return 1;
    const std::size_t by_work = multiply_adds / (kParallelMultiplyAdds / 2);
    std::size_t n = static_cast<std::size_t>(limit);
    if (by_work < n) n = by_work;
    if (parts < n) n = parts;
    return n < 1 ? 1 : static_cast<int>(n);
}

void* thread_scratch(std::size_t bytes) {
    constexpr std::size_t kAlign = 64;
    thread_local std::vector<unsigned char> storage;
    if (storage.size() < bytes + kAlign) storage.resize(bytes + kAlign);
    const auto address = reinterpret_cast<std::uintptr_t>(storage.data());
    return storage.data() + ((kAlign - address % kAlign) % kAlign);
}

}  // namespace fusedmlp
