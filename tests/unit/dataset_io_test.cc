#include "dicom/dcmtk/dataset_io.h"

#include <gtest/gtest.h>

namespace bastion::dicom {
namespace {

TEST(MemorySink, ShowsEachKeptPieceToItsTapAndStopsAtOverflow) {
  Bytes kept{9, 9};  // a session's buffer from a previous data set: cleared
  Bytes seen;
  int pieces = 0;
  MemorySink sink(10, kept, [&](ByteView piece) {
    seen.insert(seen.end(), piece.begin(), piece.end());
    ++pieces;
  });
  EXPECT_TRUE(kept.empty());
  const uint8_t a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, c[] = {9, 10, 11};
  EXPECT_EQ(sink.write(a, 4), 4);
  EXPECT_EQ(sink.write(b, 4), 4);
  EXPECT_EQ(seen, (Bytes{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(kept, seen);
  EXPECT_EQ(pieces, 2);
  EXPECT_FALSE(sink.overflowed());
  EXPECT_EQ(sink.write(c, 3), 3);  // past the cap: accepted, discarded, flagged
  EXPECT_TRUE(sink.overflowed());
  EXPECT_TRUE(kept.empty());
  EXPECT_EQ(pieces, 2);  // the tap saw nothing more
}

TEST(MemorySink, WorksWithoutATap) {
  Bytes kept;
  MemorySink sink(4, kept);
  const uint8_t a[] = {1, 2, 3};
  EXPECT_EQ(sink.write(a, 3), 3);
  EXPECT_EQ(kept, (Bytes{1, 2, 3}));
}

}  // namespace
}  // namespace bastion::dicom
