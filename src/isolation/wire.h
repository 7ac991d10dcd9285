// The framing WorkerPool and its workers share (see worker_pool.h).
#pragma once

#include <cstdint>

namespace bastion::isolation {

struct RequestHeader {
  uint32_t op;
  uint32_t nargs;
  uint64_t length;
};
struct ResponseHeader {
  uint32_t code;  // StatusCode
  uint32_t pad;
  uint64_t length;
};
inline constexpr uint32_t kMaxArgs = 4096;

}  // namespace bastion::isolation
