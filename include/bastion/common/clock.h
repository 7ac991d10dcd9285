// Injectable time and randomness, so that tests are deterministic.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace bastion {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time (UTC). Thread-safe.
  virtual std::chrono::system_clock::time_point now() const = 0;
  static const Clock& system();
};

// ISO 8601 UTC with explicit "Z", millisecond precision: 2026-11-24T22:50:50.123Z
std::string formatUtc(std::chrono::system_clock::time_point t);
// Parses "2026-11-25", "2026-11-25T10:00:00Z" or "2026-11-25T10:00:00+01:00";
// nullopt if `s` is none of these.
std::optional<std::chrono::system_clock::time_point> parseIsoTime(const std::string& s);

class Random {
 public:
  virtual ~Random() = default;
  // Fills `out` with cryptographically secure random bytes. Thread-safe.
  // Aborts the process if the system CSPRNG fails (there is no safe fallback).
  virtual void fill(std::span<uint8_t> out) = 0;
  static Random& system();
};

// A random (version 4) UUID in canonical lowercase form, 36 characters.
std::string newUuid(Random& random);
// True if `s` is a canonical lowercase UUID as produced by newUuid().
bool isCanonicalUuid(std::string_view s);

}  // namespace bastion
