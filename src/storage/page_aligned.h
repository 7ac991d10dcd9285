// PageAlignedBytes: a byte vector whose buffer starts on a 4 KiB boundary, so
// that it can be written with direct I/O (O_DIRECT needs the memory, the
// offset and the length aligned). Growing it keeps the alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace bastion::storage {

template <class T>
struct PageAlignedAllocator {
  static constexpr std::size_t kAlign = 4096;
  using value_type = T;
  PageAlignedAllocator() = default;
  template <class U>
  PageAlignedAllocator(const PageAlignedAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) {
    const std::size_t bytes = (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <class U>
  bool operator==(const PageAlignedAllocator<U>&) const noexcept {
    return true;
  }
};

using PageAlignedBytes = std::vector<uint8_t, PageAlignedAllocator<uint8_t>>;

}  // namespace bastion::storage
