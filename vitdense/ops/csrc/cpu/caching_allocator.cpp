// Caching allocator for large CPU tensors.
//
// glibc serves allocations above its mmap threshold (at most 32 MiB) with a
// fresh mmap and unmaps them on free, so every large tensor is page-faulted
// and zeroed by the kernel anew: a CPU DETR training step faults in several
// GB this way (a decoder's attention logits are 77 MB at 1100 queries).
// Like PyTorch's CUDA caching allocator, this one keeps freed large blocks in
// per-size-class free lists and hands them out again. Sizes are rounded up
// to a size class (8 per power of two, so at most 12.5% waste) and free
// lists hold at most `max_cached` bytes; beyond that a freed block goes back
// to the OS. Blocks under kMinCached bytes go to the previous allocator.
#include <c10/core/CPUAllocator.h>
#include <c10/core/alignment.h>
#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "vitdense_ops.h"

namespace vitdense {
namespace {

constexpr size_t kMinCached = size_t(1) << 20;

// Round up to the next of 8 classes per power of two.
size_t size_class(size_t n) {
  size_t power = kMinCached;
  while (power * 2 <= n) power *= 2;
  const size_t step = power / 8;
  return (n + step - 1) / step * step;
}

void free_cached_block(void *ptr);

class CachingCPUAllocator final : public c10::Allocator {
 public:
  CachingCPUAllocator(c10::Allocator *fallback, size_t max_cached)
      : fallback_(fallback), max_cached_(max_cached) {}

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCached) {
      c10::DataPtr small = fallback_->allocate(n);
      TORCH_CHECK(small.get() == small.get_context() &&
                      fallback_->raw_deleter() != nullptr,
                  "vitdense caching CPU allocator: the previous CPU "
                  "allocator does not return simple pointers");
      // freed through free_cached_block like large blocks
      void *ptr = small.release_context();
      return {ptr, ptr, &free_cached_block, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t size = size_class(n);
    void *ptr = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        ++hits_;
        live_[ptr] = size;
        return {ptr, ptr, &free_cached_block,
                c10::Device(c10::DeviceType::CPU)};
      }
      ++misses_;
    }
    // on failure, give the cached blocks of other sizes back and retry
    if (posix_memalign(&ptr, c10::gAlignment, size) != 0) {
      empty_cache();
      TORCH_CHECK(posix_memalign(&ptr, c10::gAlignment, size) == 0,
                  "vitdense caching CPU allocator: out of memory allocating ",
                  size, " bytes");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    live_[ptr] = size;
    return {ptr, ptr, &free_cached_block, c10::Device(c10::DeviceType::CPU)};
  }

  void release(void *ptr) {
    if (ptr == nullptr) return;
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) {  // a small block
      lock.unlock();
      fallback_->raw_deleter()(ptr);
      return;
    }
    const size_t size = it->second;
    live_.erase(it);
    if (cached_ + size <= max_cached_) {
      free_[size].push_back(ptr);
      cached_ += size;
    } else {
      std::free(ptr);
    }
  }

  // Returns every cached block to the OS.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto &entry : free_)
      for (void *ptr : entry.second) std::free(ptr);
    free_.clear();
    cached_ = 0;
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_), static_cast<int64_t>(max_cached_),
            static_cast<int64_t>(hits_), static_cast<int64_t>(misses_)};
  }

  void set_max_cached(size_t max_cached) {
    std::lock_guard<std::mutex> lock(mutex_);
    max_cached_ = max_cached;
  }

  // raw_allocate/raw_deallocate users (oneDNN) free through this; blocks
  // under kMinCached come from the fallback, so release() hands them back
  c10::DeleterFnPtr raw_deleter() const override { return &free_cached_block; }

  void copy_data(void *dest, const void *src, std::size_t count)
      const override {
    default_copy_data(dest, src, count);
  }

  // fork (DataLoader workers) must not copy a locked mutex into the child
  void lock() { mutex_.lock(); }
  void unlock() { mutex_.unlock(); }

 private:
  c10::Allocator *fallback_;
  size_t max_cached_;
  size_t cached_ = 0, hits_ = 0, misses_ = 0;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void *>> free_;
  std::unordered_map<void *, size_t> live_;
};

// Never destroyed: tensors may outlive static destruction at exit.
CachingCPUAllocator *g_allocator = nullptr;

void free_cached_block(void *ptr) { g_allocator->release(ptr); }

}  // namespace

bool enable_cpu_caching_allocator(int64_t max_cached_bytes) {
  TORCH_CHECK(max_cached_bytes >= 0, "max_cached_bytes must be >= 0");
  if (g_allocator == nullptr) {
    g_allocator = new CachingCPUAllocator(c10::GetCPUAllocator(),
                                          static_cast<size_t>(max_cached_bytes));
    pthread_atfork([] { g_allocator->lock(); }, [] { g_allocator->unlock(); },
                   [] { g_allocator->unlock(); });
    c10::SetCPUAllocator(g_allocator, /*priority=*/1);
  } else {
    g_allocator->set_max_cached(static_cast<size_t>(max_cached_bytes));
  }
  return c10::GetCPUAllocator() == g_allocator;
}

std::vector<int64_t> cpu_caching_allocator_stats() {
  if (g_allocator == nullptr) return {};
  return g_allocator->stats();
}

void cpu_caching_allocator_empty_cache() {
  if (g_allocator != nullptr) g_allocator->empty_cache();
}

}  // namespace vitdense
