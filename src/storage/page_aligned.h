// PageAlignedBytes: a byte vector whose buffer starts on a 4 KiB boundary, so
// that it can be written with direct I/O (O_DIRECT needs the memory, the
// offset and the length aligned). Growing it keeps the alignment.
//
// Unlike Bytes, resize() and the size constructor leave the new bytes
// uninitialised (they are about to be written: zeroing them first would
// touch every byte twice); use appendBytes() to append, which copies with
// memcpy (vector::insert goes element by element for an allocator that is
// not std::allocator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>
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
  // Default-initialisation: no zeroing for trivial types.
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  bool operator==(const PageAlignedAllocator<U>&) const noexcept {
    return true;
  }
};

using PageAlignedBytes = std::vector<uint8_t, PageAlignedAllocator<uint8_t>>;

inline void appendBytes(PageAlignedBytes& to, std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  const std::size_t at = to.size();
  to.resize(at + bytes.size());
  std::memcpy(to.data() + at, bytes.data(), bytes.size());
}

}  // namespace bastion::storage
