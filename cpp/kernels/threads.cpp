#include "threads.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define FUSEDMLP_POSIX_THREADS 1
#endif

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

// How long an idle worker polls for the next task before it sleeps: longer than the serial
// work between two products of a training step, far shorter than a scheduler time slice.
constexpr auto kSpinTime = std::chrono::microseconds(200);
// Polls between yields of the CPU while spinning, so that spinning threads do not starve
// others (ours included) on a machine with more runnable threads than cores.
constexpr int kPollsPerYield = 64;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

inline void yield_cpu() {
#ifdef FUSEDMLP_POSIX_THREADS
    sched_yield();
#else
    std::this_thread::yield();
#endif
}

class ThreadPool {
public:
    bool try_run(int count, void (*task)(void*, int, int), void* context) {
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        while (static_cast<int>(workers_.size()) < count - 1) {
            const int id = static_cast<int>(workers_.size()) + 1;
            const unsigned current = generation_.load();  // the new worker waits for the next one
            workers_.emplace_back([this, id, current] { work(id, current); });
            workers_.back().detach();
        }
        task_ = task;
        context_ = context;
        count_ = count;
        // Every worker acknowledges every task, also those it sits out: then none can still be
        // reading task_ or count_ when the next run rewrites them.
        remaining_.store(static_cast<int>(workers_.size()));
        generation_.fetch_add(1);  // seq_cst, ordered against the workers' sleepers_ increments
        if (sleepers_.load() > 0) {
            std::lock_guard<std::mutex> lock(sleep_mutex_);
            wake_.notify_all();
        }
        task(context, 0, count);
        for (int polls = 1; remaining_.load(std::memory_order_acquire) != 0; ++polls) {
            relax();
            if (polls % kPollsPerYield == 0) yield_cpu();
        }
        return true;
    }

private:
    void work(int id, unsigned seen) {
        for (;;) {
            wait_for_generation_after(seen);
            seen = generation_.load(std::memory_order_acquire);
            if (id < count_) task_(context_, id, count_);
            remaining_.fetch_sub(1, std::memory_order_release);
        }
    }

    void wait_for_generation_after(unsigned seen) {
        const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
        for (int polls = 1;; ++polls) {
            if (generation_.load(std::memory_order_acquire) != seen) return;
            relax();
            if (polls % kPollsPerYield == 0) {
                if (std::chrono::steady_clock::now() > deadline) break;
                yield_cpu();
            }
        }
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        sleepers_.fetch_sub(1);
    }

    std::mutex run_mutex_;
    std::vector<std::thread> workers_;
    // The current task: written by the runner before generation_ is bumped, read by the
    // workers after they see the new generation.
    void (*task_)(void*, int, int) = nullptr;
    void* context_ = nullptr;
    int count_ = 0;
    std::atomic<unsigned> generation_{0};
    std::atomic<int> remaining_{0};
    std::atomic<int> sleepers_{0};
    std::mutex sleep_mutex_;
    std::condition_variable wake_;
};

// Never destroyed: detached workers may still wait on it at exit. A forked child has none of
// the parent's workers, so it starts a pool of its own.
std::atomic<ThreadPool*> pool{nullptr};

#ifdef FUSEDMLP_POSIX_THREADS
void forget_pool_in_child() { pool.store(nullptr); }
#endif

ThreadPool& the_pool() {
    ThreadPool* current = pool.load(std::memory_order_acquire);
    if (current != nullptr) return *current;
    static std::mutex creation;
    std::lock_guard<std::mutex> lock(creation);
    current = pool.load();
    if (current == nullptr) {
#ifdef FUSEDMLP_POSIX_THREADS
        static const int registered = pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
        (void)registered;
#endif
        current = new ThreadPool();
        pool.store(current, std::memory_order_release);
    }
    return *current;
}

}  // namespace

void parallel_run(int count, void (*task)(void*, int, int), void* context) {
    if (count <= 1 || !the_pool().try_run(count, task, context)) task(context, 0, 1);
}

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
