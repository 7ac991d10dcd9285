#include "dicom/parse/dicom_scanner.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "test_util.h"

namespace bastion::dicom {
namespace {

using testing::DsWriter;
using testing::makeInstance;

StatusOr<ScanResult> scanLe(const Bytes& b) { return scanDataset(b, Encoding::kExplicitLittle, ScanLimits{}); }

// Nested undefined-length sequences, `depth` deep.
Bytes deepSequence(int depth) {
  DsWriter w;
  for (int i = 0; i < depth; ++i) {
    w.header(0x00081115, "SQ", 0xFFFFFFFF);
    w.item(0xFFFFFFFF);
  }
  for (int i = 0; i < depth; ++i) w.itemEnd().seqEnd();
  return w.bytes();
}

TEST(DicomScanner, ExtractsIndexedAttributes) {
  auto r = scanLe(makeInstance("PID1", "DOE^JANE", "1.2.3", "1.2.3.4", "1.2.3.4.5"));
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->values.at(tag::kPatientId), "PID1");
  EXPECT_EQ(r->values.at(tag::kPatientName), "DOE^JANE");
  EXPECT_EQ(r->values.at(tag::kStudyInstanceUid), "1.2.3");
  EXPECT_EQ(r->values.at(tag::kSopInstanceUid), "1.2.3.4.5");
  EXPECT_EQ(r->values.at(tag::kRows), "16");
  EXPECT_TRUE(r->pixel.present);
  EXPECT_EQ(r->pixel.length, 512u);
}

TEST(DicomScanner, RejectsTruncatedElement) {
  Bytes b = makeInstance("P", "N", "1.2", "1.2.3", "1.2.3.4");
  for (size_t cut : {b.size() - 1, b.size() - 100, size_t{5}, size_t{9}}) {
    Bytes t(b.begin(), b.begin() + static_cast<long>(cut));
    EXPECT_FALSE(scanLe(t).ok()) << cut;
  }
}

TEST(DicomScanner, RejectsLengthBeyondData) {
  Bytes b = DsWriter().str(0x00100010, "PN", "AB").header(0x7FE00010, "OB", 0xFFFFFFF0).bytes();
  auto r = scanLe(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(DicomScanner, CapsSequenceDepth) {
  EXPECT_TRUE(scanLe(deepSequence(32)).ok());
  auto r = scanLe(deepSequence(33));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  auto deep = scanLe(deepSequence(10000));  // no stack exhaustion
  EXPECT_FALSE(deep.ok());
}

TEST(DicomScanner, RejectsStructuralLies) {
  // Out of order, duplicate, group 0002 in the data set, unknown VR, odd length.
  EXPECT_FALSE(scanLe(DsWriter().str(0x00100020, "LO", "A").str(0x00100010, "PN", "B").bytes()).ok());
  EXPECT_FALSE(scanLe(DsWriter().str(0x00100010, "PN", "A").str(0x00100010, "PN", "B").bytes()).ok());
  EXPECT_FALSE(scanLe(DsWriter().str(0x00020010, "UI", "1.2").bytes()).ok());
  EXPECT_FALSE(scanLe(DsWriter().str(0x00100010, "ZZ", "AB").bytes()).ok());
  Bytes odd = DsWriter().header(0x00100010, "PN", 3).bytes();
  odd.insert(odd.end(), {'A', 'B', 'C'});
  EXPECT_FALSE(scanLe(odd).ok());
}

TEST(DicomScanner, RejectsUnterminatedSequences) {
  Bytes b = DsWriter().header(0x00081115, "SQ", 0xFFFFFFFF).item(0xFFFFFFFF).bytes();
  EXPECT_FALSE(scanLe(b).ok());
  Bytes item_too_long = DsWriter().header(0x00081115, "SQ", 8).item(100).bytes();
  EXPECT_FALSE(scanLe(item_too_long).ok());
}

TEST(DicomScanner, CapsItemsPerSequence) {
  DsWriter w;
  w.header(0x00081115, "SQ", 0xFFFFFFFF);
  for (int i = 0; i < 20; ++i) w.item(0);
  w.seqEnd();
  ScanLimits lim;
  lim.max_items = 10;
  auto r = scanDataset(w.bytes(), Encoding::kExplicitLittle, lim);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
}

TEST(DicomScanner, WalksEncapsulatedPixelData) {
  DsWriter w;
  w.us(0x00280010, 4).header(0x7FE00010, "OB", 0xFFFFFFFF).item(0).item(4).raw({1, 2, 3, 4}).seqEnd();
  auto r = scanLe(w.bytes());
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_TRUE(r->pixel.encapsulated);
  DsWriter bad;
  bad.header(0x7FE00010, "OB", 0xFFFFFFFF).item(1000).raw({1, 2});
  EXPECT_FALSE(scanLe(bad.bytes()).ok());
}

TEST(DicomScanner, ReadsImplicitLittleEndian) {
  // (0010,0010) len 4 "AB^C" in implicit VR.
  Bytes b = {0x10, 0x00, 0x10, 0x00, 4, 0, 0, 0, 'A', 'B', '^', 'C'};
  auto r = scanDataset(b, Encoding::kImplicitLittle, ScanLimits{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->values.at(tag::kPatientName), "AB^C");
}

TEST(DicomScanner, InflatesDeflatedSyntaxWithinLimit) {
  Bytes plain = makeInstance("P", "N", "1.2", "1.2.3", "1.2.3.4");
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  Bytes out(plain.size() + 100);
  zs.next_in = plain.data();
  zs.avail_in = static_cast<uInt>(plain.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  auto r = scanDataset(out, Encoding::kDeflatedExplicitLittle, ScanLimits{});
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->values.at(tag::kPatientId), "P");
  ScanLimits tiny;
  tiny.max_inflated = 100;
  EXPECT_EQ(scanDataset(out, Encoding::kDeflatedExplicitLittle, tiny).status().code(),
            StatusCode::kResourceExhausted);
}

TEST(Part10, ParsesMetaAndFlagsNonZeroPreamble) {
  Bytes f(128, 0);
  f[0] = 'M';
  f[1] = 'Z';
  for (char c : std::string("DICM")) f.push_back(static_cast<uint8_t>(c));
  Bytes meta = DsWriter().str(0x00020010, "UI", "1.2.840.10008.1.2.1").bytes();
  f.insert(f.end(), meta.begin(), meta.end());
  auto p = parsePart10(f);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->transfer_syntax, "1.2.840.10008.1.2.1");
  EXPECT_FALSE(p->preamble_zero);
  EXPECT_EQ(p->dataset_offset, f.size());
  EXPECT_FALSE(parsePart10(Bytes(100, 0)).ok());
}

TEST(TransferSyntax, KnowsSupportedSyntaxes) {
  EXPECT_TRUE(encodingOf("1.2.840.10008.1.2.4.50").ok());
  EXPECT_TRUE(encodingOf("1.2.840.10008.1.2.5").ok());
  EXPECT_FALSE(encodingOf("1.2.3").ok());
  EXPECT_FALSE(isEncapsulatedSyntax("1.2.840.10008.1.2.4.x"));
}

}  // namespace
}  // namespace bastion::dicom
