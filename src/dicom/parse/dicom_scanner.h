// DicomScanner: a bounded, non-allocating walk over an encoded DICOM data set
// (PS3.5 chapter 7), written for hostile input. It validates the structure
// before any other code (DCMTK included) parses the bytes:
//   - every element, item and fragment length fits in what encloses it;
//   - sequences nest at most `max_depth` levels, with at most
//     `max_items` items each; undefined lengths are properly delimited;
//   - tags ascend within each data set, no duplicates, no group 0002 in the
//     data set, even value lengths;
// and it extracts the top-level attributes Bastion indexes. It never
// recurses deeper than max_depth and never allocates proportionally to a
// declared length. Pure function of its input: safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "bastion/common/bytes.h"
#include "bastion/common/status.h"

namespace bastion::dicom {

enum class Encoding { kImplicitLittle, kExplicitLittle, kExplicitBig, kDeflatedExplicitLittle };

// Maps a transfer syntax UID to its data set encoding; kInvalidArgument for
// an unknown or unsupported syntax. Encapsulated (compressed) syntaxes use
// explicit little endian for the data set.
StatusOr<Encoding> encodingOf(std::string_view transfer_syntax_uid);
bool isEncapsulatedSyntax(std::string_view transfer_syntax_uid);

struct ScanLimits {
  int max_depth = 32;
  uint64_t max_items = 100000;     // per sequence
  uint64_t max_elements = 2000000;  // per data set, all levels together
  uint64_t max_inflated = 512ull << 20;
};

struct PixelInfo {
  bool present = false;
  bool encapsulated = false;
  uint64_t length = 0;  // native pixel data length (0 for encapsulated)
};

struct ScanResult {
  // Top-level values of the attributes Bastion indexes, keyed by tag
  // (group << 16 | element). Text values have trailing padding removed;
  // US values are rendered as decimal.
  std::map<uint32_t, std::string> values;
  PixelInfo pixel;
  uint64_t element_count = 0;
  int max_depth_seen = 0;
};

StatusOr<ScanResult> scanDataset(ByteView data, Encoding encoding, const ScanLimits& limits);

// A Part-10 file split into its parts.
struct Part10 {
  size_t dataset_offset = 0;  // where the data set starts in the file bytes
  std::string transfer_syntax;
  std::string media_sop_class;
  std::string media_sop_instance;
  bool preamble_zero = true;
};
// Parses the preamble, "DICM" and the group 0002 meta information.
StatusOr<Part10> parsePart10(ByteView file);

// Tags (group << 16 | element).
namespace tag {
constexpr uint32_t kSpecificCharacterSet = 0x00080005, kSopClassUid = 0x00080016, kSopInstanceUid = 0x00080018,
                   kStudyDate = 0x00080020, kStudyTime = 0x00080030, kAccessionNumber = 0x00080050,
                   kModality = 0x00080060, kReferringPhysicianName = 0x00080090,
                   kStudyDescription = 0x00081030, kSeriesDescription = 0x0008103E, kPatientName = 0x00100010,
                   kPatientId = 0x00100020, kIssuerOfPatientId = 0x00100021, kPatientBirthDate = 0x00100030,
                   kPatientSex = 0x00100040, kOtherPatientIds = 0x00101000, kStudyInstanceUid = 0x0020000D,
                   kSeriesInstanceUid = 0x0020000E, kStudyId = 0x00200010, kSeriesNumber = 0x00200011,
                   kInstanceNumber = 0x00200013, kSamplesPerPixel = 0x00280002, kPhotometricInterpretation = 0x00280004,
                   kNumberOfFrames = 0x00280008,
                   kRows = 0x00280010, kColumns = 0x00280011, kBitsAllocated = 0x00280100,
                   kBitsStored = 0x00280101, kHighBit = 0x00280102, kRequestingPhysician = 0x00321032,
                   kPixelData = 0x7FE00010;
}  // namespace tag

}  // namespace bastion::dicom
