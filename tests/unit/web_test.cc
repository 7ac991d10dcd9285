// The HTTP-side parsers: media types, multipart/related streaming, query
// strings, QIDO-RS parameters and the DICOM JSON of a match.
#include <gtest/gtest.h>

#include "web/dicomweb/negotiation.h"
#include "web/dicomweb/qido.h"
#include "web/http/accept.h"
#include "web/http/multipart.h"
#include "web/http/query_string.h"
#include "web/http/server.h"

namespace bastion::web {
namespace {

struct Collected {
  std::vector<std::map<std::string, std::string>> headers;
  std::vector<std::string> bodies;
};

MultipartParser::Callbacks collect(Collected& c) {
  return {[&c](const std::map<std::string, std::string>& h) {
            c.headers.push_back(h);
            c.bodies.emplace_back();
            return okStatus();
          },
          [&c](ByteView d) {
            c.bodies.back().append(reinterpret_cast<const char*>(d.data()), d.size());
            return okStatus();
          },
          [] { return okStatus(); }};
}

Status feedInChunks(MultipartParser& p, const std::string& body, size_t chunk) {
  for (size_t i = 0; i < body.size(); i += chunk) {
    const std::string piece = body.substr(i, chunk);
    RETURN_IF_ERROR(p.feed(ByteView(reinterpret_cast<const uint8_t*>(piece.data()), piece.size())));
  }
  return p.finish();
}

TEST(MediaTypeTest, QuotedAndUnquotedParameters) {
  auto a = parseMediaType("Multipart/Related; type=\"application/dicom\"; boundary=abc");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->type, "multipart/related");
  EXPECT_EQ(a->params["type"], "application/dicom");
  EXPECT_EQ(a->params["boundary"], "abc");
  auto b = parseMediaType("multipart/related;type=application/dicom;boundary=\"a;b \\\"c\\\"\"");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->params["type"], "application/dicom");
  EXPECT_EQ(b->params["boundary"], "a;b \"c\"");
  EXPECT_FALSE(parseMediaType("multipart").ok());
  EXPECT_FALSE(parseMediaType("a/b; x").ok());
  EXPECT_FALSE(parseMediaType("a/b; x=\"open").ok());
  EXPECT_FALSE(parseMediaType("a/b; x=1; x=2").ok());
}

TEST(AcceptTest, RangesParametersAndQuality) {
  auto a = parseAccept(
      "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50, "
      "multipart/related; type=\"application/dicom, really\";q=0.5,*/*;q=0");
  ASSERT_TRUE(a.ok()) << a.status().toString();
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ((*a)[0].media.params.at("transfer-syntax"), "1.2.840.10008.1.2.4.50");
  EXPECT_EQ((*a)[1].media.params.at("type"), "application/dicom, really");  // the comma is inside quotes
  EXPECT_DOUBLE_EQ((*a)[1].q, 0.5);
  EXPECT_EQ((*a)[1].media.params.count("q"), 0u);
  EXPECT_EQ((*a)[2].media.type, "*/*");
  EXPECT_DOUBLE_EQ((*a)[2].q, 0.0);
  EXPECT_TRUE(parseAccept("").ok() && parseAccept("")->empty());
  EXPECT_TRUE(parseAccept(" , image/png ,").ok());
  for (const char* bad : {"image", "image/png; q=2", "image/png;q=abc", "a/b; x=\"open", "image/png; q=0.5; q=1"})
    EXPECT_FALSE(parseAccept(bad).ok()) << bad;
  std::string many;
  for (int i = 0; i < 65; ++i) many += "image/png,";
  EXPECT_FALSE(parseAccept(many).ok());
  EXPECT_FALSE(parseAccept(std::string(9000, 'a')).ok());
}

TEST(RateLimitKeyTest, Ipv4ByAddressIpv6ByItsSlash64) {
  EXPECT_EQ(rateLimitKey("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(rateLimitKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), rateLimitKey("2001:db8:1:2::1"));
  EXPECT_EQ(rateLimitKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_NE(rateLimitKey("2001:db8:1:3::1"), rateLimitKey("2001:db8:1:2::1"));
  EXPECT_EQ(rateLimitKey("::ffff:10.1.2.3"), "::ffff:10.1.2.3");  // IPv4-mapped: the IPv4 host
}

TEST(NegotiationTest, DicomPartsFollowPs318Defaults) {
  const std::string implicit = "1.2.840.10008.1.2", rle = "1.2.840.10008.1.2.5", jpeg = "1.2.840.10008.1.2.4.50",
                    j2k_lossless = "1.2.840.10008.1.2.4.90";
  auto deflt = acceptedDicomSyntaxes("");
  ASSERT_TRUE(deflt.ok());
  EXPECT_EQ(chooseDicomDelivery(*deflt, kExplicitLittle, true), Delivery::kAsStored);
  EXPECT_EQ(chooseDicomDelivery(*deflt, implicit, true), Delivery::kTranscode);
  EXPECT_EQ(chooseDicomDelivery(*deflt, rle, true), Delivery::kTranscode);
  EXPECT_EQ(chooseDicomDelivery(*deflt, jpeg, true), Delivery::kAsStored);          // lossy stays lossy
  EXPECT_EQ(chooseDicomDelivery(*deflt, j2k_lossless, false), Delivery::kAsStored);  // no decoder
  auto any = acceptedDicomSyntaxes("multipart/related; type=application/dicom; transfer-syntax=*");
  EXPECT_EQ(chooseDicomDelivery(*any, rle, true), Delivery::kAsStored);
  auto explicit_only = acceptedDicomSyntaxes(
      "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1");
  EXPECT_EQ(chooseDicomDelivery(*explicit_only, jpeg, true), Delivery::kTranscode);
  EXPECT_EQ(chooseDicomDelivery(*explicit_only, j2k_lossless, false), Delivery::kRefuse);
  auto rle_only = acceptedDicomSyntaxes("multipart/related; type=\"application/dicom\"; transfer-syntax=" + rle);
  EXPECT_EQ(chooseDicomDelivery(*rle_only, rle, true), Delivery::kAsStored);
  EXPECT_EQ(chooseDicomDelivery(*rle_only, implicit, true), Delivery::kRefuse);
  auto other = acceptedDicomSyntaxes("image/png, multipart/related; type=application/dicom; q=0");
  EXPECT_FALSE(other->acceptable);
  EXPECT_EQ(chooseDicomDelivery(*other, kExplicitLittle, true), Delivery::kRefuse);
}

TEST(NegotiationTest, FramesAreRawPixelsOrTheStoredStream) {
  const std::string rle = "1.2.840.10008.1.2.5", jls = "1.2.840.10008.1.2.4.80";
  auto raw = acceptedFrameSyntaxes("multipart/related; type=\"application/octet-stream\"");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(chooseFrameDelivery(*raw, "1.2.840.10008.1.2", false), Delivery::kAsStored);
  EXPECT_EQ(chooseFrameDelivery(*raw, rle, true), Delivery::kTranscode);
  EXPECT_EQ(chooseFrameDelivery(*raw, "1.2.840.10008.1.2.4.90", false), Delivery::kRefuse);
  auto jls_type = acceptedFrameSyntaxes("multipart/related; type=image/jls");
  EXPECT_EQ(chooseFrameDelivery(*jls_type, jls, true), Delivery::kAsStored);
  EXPECT_EQ(jls_type->syntaxes.at(jls), "image/jls");
  EXPECT_EQ(chooseFrameDelivery(*jls_type, rle, true), Delivery::kRefuse);
  auto star = acceptedFrameSyntaxes("multipart/related; type=application/octet-stream; transfer-syntax=*");
  EXPECT_EQ(chooseFrameDelivery(*star, rle, true), Delivery::kAsStored);
  EXPECT_FALSE(acceptedFrameSyntaxes("multipart/related; type=image/png")->acceptable);
}

TEST(MultipartTest, PartsSurviveAnyChunking) {
  const std::string body =
      "preamble to ignore\r\n--XYZ\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--XY-almost-a-delimiter\r\n"
      "\r\n--XYZ\r\nContent-Type: application/dicom\r\nX-Extra: 1\r\n\r\nsecond\r\n--XYZ--\r\nepilogue";
  for (size_t chunk : {1u, 2u, 3u, 7u, 64u, 4096u}) {
    Collected c;
    MultipartParser p("XYZ", {}, collect(c));
    ASSERT_TRUE(feedInChunks(p, body, chunk).ok()) << chunk;
    ASSERT_EQ(c.bodies.size(), 2u) << chunk;
    EXPECT_EQ(c.bodies[0], "first\r\n--XY-almost-a-delimiter\r\n") << chunk;
    EXPECT_EQ(c.bodies[1], "second") << chunk;
    EXPECT_EQ(c.headers[1].at("x-extra"), "1");
    EXPECT_EQ(c.headers[0].at("content-type"), "application/dicom");
  }
}

TEST(MultipartTest, LargePartsSurviveEveryDelimiterSplit) {
  // Binary bodies full of CRs and near-delimiters, fed so that the delimiter
  // after each part is cut at every possible place (the in-body fast path).
  std::string parts[3];
  for (int i = 0; i < 3; ++i) {
    parts[i].resize(5000 + 777 * i);
    for (size_t j = 0; j < parts[i].size(); ++j) parts[i][j] = "\r\n-Q"[(j * 7 + i) % 4];
    parts[i] += "\r\n--QQ";  // almost the delimiter "\r\n--QQQ"
  }
  std::string body = "--QQQ\r\n\r\n" + parts[0];
  for (int i = 1; i < 3; ++i) body += "\r\n--QQQ\r\n\r\n" + parts[i];
  body += "\r\n--QQQ--";
  for (size_t chunk : {1u, 7u, 8u, 9u, 10u, 64u, 1000u, 4099u, 100000u}) {
    for (size_t offset = 0; offset < 12; ++offset) {  // shifts where the chunks fall
      Collected c;
      MultipartParser p("QQQ", {}, collect(c));
      Status s = p.feed(ByteView(reinterpret_cast<const uint8_t*>(body.data()), offset));
      if (s.ok()) s = feedInChunks(p, body.substr(offset), chunk);
      ASSERT_TRUE(s.ok()) << chunk << "/" << offset << ": " << s.toString();
      ASSERT_EQ(c.bodies.size(), 3u) << chunk << "/" << offset;
      for (int i = 0; i < 3; ++i) EXPECT_EQ(c.bodies[i], parts[i]) << chunk << "/" << offset << " part " << i;
    }
  }
}

TEST(MultipartTest, HostileBodiesAreRefused) {
  Collected c;
  MultipartParser unterminated("b", {}, collect(c));
  EXPECT_FALSE(feedInChunks(unterminated, "--b\r\n\r\ndata without end", 5).ok());
  std::string many;
  for (int i = 0; i < 20; ++i) many += "--b\r\n\r\nx\r\n";
  many += "--b--";
  MultipartParser limited("b", {10, 1024, 1024}, collect(c));
  EXPECT_EQ(feedInChunks(limited, many, 13).code(), StatusCode::kResourceExhausted);
  MultipartParser headers("b", {10, 64, 1024}, collect(c));
  EXPECT_EQ(feedInChunks(headers, "--b\r\nX: " + std::string(200, 'a') + "\r\n\r\nx\r\n--b--", 16).code(),
            StatusCode::kResourceExhausted);
  MultipartParser preamble("b", {10, 64, 100}, collect(c));
  EXPECT_FALSE(feedInChunks(preamble, std::string(1000, 'p'), 100).ok());
  MultipartParser bad_header("b", {}, collect(c));
  EXPECT_FALSE(feedInChunks(bad_header, "--b\r\nno colon here\r\n\r\nx\r\n--b--", 4).ok());
  MultipartParser bad_boundary(std::string(71, 'b'), {}, collect(c));
  EXPECT_FALSE(bad_boundary.finish().ok());
}

TEST(QueryStringTest, DecodesAndBounds) {
  auto q = parseQueryString("PatientName=SMITH%5EJOHN*&StudyDate=20200101-&a+b=c+d&empty=&&flag");
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->size(), 5u);
  EXPECT_EQ((*q)[0], (std::pair<std::string, std::string>{"PatientName", "SMITH^JOHN*"}));
  EXPECT_EQ((*q)[2], (std::pair<std::string, std::string>{"a b", "c d"}));
  EXPECT_EQ((*q)[4].first, "flag");
  EXPECT_FALSE(parseQueryString("a=%4").ok());
  EXPECT_FALSE(parseQueryString("a=%zz").ok());
  EXPECT_FALSE(parseQueryString("a=%00").ok());
  EXPECT_FALSE(parseQueryString(std::string(70000, 'a')).ok());
  EXPECT_FALSE(decodePathSegment("..%2Fetc").ok());
  EXPECT_EQ(*decodePathSegment("1.2.3"), "1.2.3");
}

TEST(QidoTest, KeysLimitsAndLevels) {
  auto params = parseQueryString("PatientID=P1&0020000D=1.2&limit=100000000&offset=3&includefield=all&fuzzymatching=false");
  auto r = parseQido(QueryLevel::kStudy, "", "", *params, 1000);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->query.limit, 1000u);  // capped
  EXPECT_EQ(r->offset, 3u);
  EXPECT_EQ(r->query.keys.at(0x00100020), "P1");
  EXPECT_EQ(r->query.keys.at(0x0020000D), "1.2");
  auto series_key = parseQueryString("Modality=CT");
  EXPECT_FALSE(parseQido(QueryLevel::kStudy, "", "", *series_key, 10).ok());  // not a study-level key
  EXPECT_TRUE(parseQido(QueryLevel::kSeries, "1.2", "", *series_key, 10).ok());
  for (const char* bad : {"Unknown=1", "limit=-1", "limit=abc", "fuzzymatching=true", "includefield=Nope",
                          "PatientID=a&PatientID=b"})
    EXPECT_FALSE(parseQido(QueryLevel::kImage, "", "", *parseQueryString(bad), 10).ok()) << bad;
}

TEST(QidoTest, DicomJsonModel) {
  QueryRow row{{0x00100010, "DOE^JANE"}, {0x0020000D, "1.2.3"}, {0x00201208, "12"}, {0x00080061, "CT\\MR"},
               {0x00080050, ""}};
  auto j = toDicomJson(row, QueryLevel::kStudy, "/dicom-web");
  EXPECT_EQ(j["00100010"]["vr"], "PN");
  EXPECT_EQ(j["00100010"]["Value"][0]["Alphabetic"], "DOE^JANE");
  EXPECT_EQ(j["00201208"]["Value"][0], 12);
  EXPECT_EQ(j["00080061"]["Value"].size(), 2u);
  EXPECT_FALSE(j["00080050"].contains("Value"));  // empty attribute: vr only
  EXPECT_EQ(j["00081190"]["Value"][0], "/dicom-web/studies/1.2.3");
}

}  // namespace
}  // namespace bastion::web
