// Helpers shared by unit tests: deterministic randomness, temp directories,
// and a tiny DICOM data set writer for building test inputs.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <vector>
#include <cstring>
#include <filesystem>
#include <string>

#include "bastion/common/bytes.h"
#include "bastion/common/clock.h"
#include "bastion/service/archive.h"

namespace bastion::testing {

// Deterministic, NOT secure: a counter-based generator for reproducible tests.
class FakeRandom final : public Random {
 public:
  explicit FakeRandom(uint64_t seed = 1) : state_(seed) {}
  void fill(std::span<uint8_t> out) override {
    for (auto& b : out) {
      state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
      b = static_cast<uint8_t>(state_ >> 56);
    }
  }

 private:
  uint64_t state_;
};

class FixedClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  }
};

// A clock tests move by hand.
class ManualClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::time_point(std::chrono::seconds(t_.load()));
  }
  void advance(std::chrono::seconds d) { t_ += d.count(); }

 private:
  std::atomic<int64_t> t_{1800000000};
};

// Keeps every audit event, for tests that check what was recorded.
class RecordingAudit final : public AuditLog {
 public:
  Status append(const AuditEvent& e) override {
    std::lock_guard lock(mu);
    events.push_back(e);
    return okStatus();
  }
  std::mutex mu;
  std::vector<AuditEvent> events;
};

class NullAudit final : public AuditLog {
 public:
  Status append(const AuditEvent&) override { return okStatus(); }
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bastion-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Explicit VR little endian element writer.
class DsWriter {
 public:
  DsWriter& str(uint32_t tag, const char* vr, std::string v) {
    if (v.size() % 2) v.push_back(std::strcmp(vr, "UI") == 0 ? '\0' : ' ');
    header(tag, vr, static_cast<uint32_t>(v.size()));
    out_.insert(out_.end(), v.begin(), v.end());
    return *this;
  }
  DsWriter& us(uint32_t tag, uint16_t v) {
    header(tag, "US", 2);
    out_.push_back(static_cast<uint8_t>(v));
    out_.push_back(static_cast<uint8_t>(v >> 8));
    return *this;
  }
  DsWriter& ob(uint32_t tag, const char* vr, uint32_t len, const Bytes& data) {
    header(tag, vr, len);
    out_.insert(out_.end(), data.begin(), data.end());
    return *this;
  }
  DsWriter& raw(const Bytes& b) {
    out_.insert(out_.end(), b.begin(), b.end());
    return *this;
  }
  // Header of a long-form element (OB, SQ, UN...) with the given length.
  DsWriter& header(uint32_t tag, const char* vr, uint32_t len) {
    u16(static_cast<uint16_t>(tag >> 16));
    u16(static_cast<uint16_t>(tag));
    out_.push_back(static_cast<uint8_t>(vr[0]));
    out_.push_back(static_cast<uint8_t>(vr[1]));
    static const char* kLong[] = {"OB", "OW", "SQ", "UN", "UT", "OD", "OF", "OL", "UC", "UR"};
    bool is_long = false;
    for (auto* l : kLong) is_long = is_long || std::strcmp(l, vr) == 0;
    if (is_long) {
      u16(0);
      u32(len);
    } else {
      u16(static_cast<uint16_t>(len));
    }
    return *this;
  }
  DsWriter& item(uint32_t len) {
    u16(0xFFFE);
    u16(0xE000);
    u32(len);
    return *this;
  }
  DsWriter& itemEnd() {
    u16(0xFFFE);
    u16(0xE00D);
    u32(0);
    return *this;
  }
  DsWriter& seqEnd() {
    u16(0xFFFE);
    u16(0xE0DD);
    u32(0);
    return *this;
  }
  Bytes bytes() const { return out_; }

 private:
  void u16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v));
    out_.push_back(static_cast<uint8_t>(v >> 8));
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes out_;
};

// A minimal valid CT-like instance (explicit VR LE data set).
inline Bytes makeInstance(const std::string& patient_id, const std::string& name, const std::string& study,
                          const std::string& series, const std::string& sop, const std::string& date = "20260101",
                          const std::string& modality = "CT", const std::string& accession = "ACC1") {
  Bytes pixels(16 * 16 * 2, 7);
  return DsWriter()
      .str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2")
      .str(0x00080018, "UI", sop)
      .str(0x00080020, "DA", date)
      .str(0x00080050, "SH", accession)
      .str(0x00080060, "CS", modality)
      .str(0x00080090, "PN", "REFER^DOC")
      .str(0x00081030, "LO", "HEAD STUDY")
      .str(0x00100010, "PN", name)
      .str(0x00100020, "LO", patient_id)
      .str(0x00100030, "DA", "19700101")
      .str(0x0020000D, "UI", study)
      .str(0x0020000E, "UI", series)
      .us(0x00280002, 1)
      .us(0x00280010, 16)
      .us(0x00280011, 16)
      .us(0x00280100, 16)
      .us(0x00280101, 12)
      .us(0x00280102, 11)
      .ob(0x7FE00010, "OW", static_cast<uint32_t>(pixels.size()), pixels)
      .bytes();
}

// A registered node acting without user identity: `perms`, scope = its site.
inline CallContext nodeContext(const std::string& ae, uint32_t perms, const std::string& site = "main") {
  CallContext ctx{ae, "127.0.0.1", "", {}};
  ctx.principal.kind = Principal::Kind::kNode;
  ctx.principal.name = ae;
  ctx.principal.permissions = perms;
  ctx.principal.scope_rules = kScopeSite;
  ctx.principal.site = site;
  return ctx;
}

}  // namespace bastion::testing
