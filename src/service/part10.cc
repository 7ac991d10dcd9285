// Part-10 file assembly and UID syntax: small, self-contained encoders.
#include <cstring>

#include "bastion/service/archive.h"
#include "dicom/parse/dicom_scanner.h"

namespace bastion {
namespace {

void putLe16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void putRaw(Bytes& b, std::string_view s) {
  for (char c : s) b.push_back(static_cast<uint8_t>(c));
}
void putLe32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// One explicit-VR little-endian meta element with a UI/SH/AE value padded to even length.
void putMeta(Bytes& b, uint16_t elem, const char* vr, std::string value, char pad) {
  if (value.size() % 2) value.push_back(pad);
  putLe16(b, 0x0002);
  putLe16(b, elem);
  b.push_back(static_cast<uint8_t>(vr[0]));
  b.push_back(static_cast<uint8_t>(vr[1]));
  putLe16(b, static_cast<uint16_t>(value.size()));
  b.insert(b.end(), value.begin(), value.end());
}

}  // namespace

bool isValidUid(std::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  size_t start = 0;
  while (true) {
    size_t dot = uid.find('.', start);
    std::string_view comp = uid.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (comp.empty()) return false;
    if (comp.size() > 1 && comp[0] == '0') return false;
    for (char c : comp)
      if (c < '0' || c > '9') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

Bytes buildPart10(const std::string& sop_class, const std::string& sop_instance, const std::string& ts,
                  const std::string& impl_uid, const std::string& impl_version, ByteView dataset) {
  Bytes group;
  // (0002,0001) OB 00\01
  putLe16(group, 0x0002);
  putLe16(group, 0x0001);
  putRaw(group, std::string_view("OB\0\0", 4));
  putLe32(group, 2);
  putRaw(group, std::string_view("\0\1", 2));
  putMeta(group, 0x0002, "UI", sop_class, '\0');
  putMeta(group, 0x0003, "UI", sop_instance, '\0');
  putMeta(group, 0x0010, "UI", ts, '\0');
  putMeta(group, 0x0012, "UI", impl_uid, '\0');
  putMeta(group, 0x0013, "SH", impl_version, ' ');

  // Preamble (zeros), "DICM", (0002,0000) UL group length, the group, the data set.
  uint8_t head[12] = {0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0};
  const auto glen = static_cast<uint32_t>(group.size());
  for (int i = 0; i < 4; ++i) head[8 + i] = static_cast<uint8_t>(glen >> (8 * i));
  Bytes out(132 + sizeof head + group.size() + dataset.size(), 0);
  std::memcpy(out.data() + 128, "DICM", 4);
  std::memcpy(out.data() + 132, head, sizeof head);
  std::memcpy(out.data() + 132 + sizeof head, group.data(), group.size());
  if (!dataset.empty()) std::memcpy(out.data() + 132 + sizeof head + group.size(), dataset.data(), dataset.size());
  return out;
}

Status checkObjectIdentity(ByteView head, const InstanceLocation& loc) {
  auto p10 = dicom::parsePart10(head);
  if (!p10.ok() || p10->media_sop_instance != loc.sop_uid)
    return dataLoss("object " + loc.blob_id + " is not the instance its index row names");
  return okStatus();
}

}  // namespace bastion
