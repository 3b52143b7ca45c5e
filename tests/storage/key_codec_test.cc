#include "storage/key_codec.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"

namespace predlog::storage {
namespace {

TEST(KeyCodec, SignedIntegersSortInNumericOrder) {
  const std::vector<int64_t> values = {INT64_MIN, -1000, -1, 0, 1, 42, INT64_MAX};
  std::vector<std::string> keys;
  for (int64_t v : values) {
    std::string k;
    AppendI64(&k, v);
    keys.push_back(k);
  }
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  for (size_t i = 0; i < values.size(); ++i) {
    absl::string_view in = keys[i];
    int64_t v;
    ASSERT_TRUE(ReadI64(&in, &v));
    EXPECT_EQ(v, values[i]);
    EXPECT_TRUE(in.empty());
  }
}

TEST(KeyCodec, TimesBeforeTheEpochSortFirst) {
  std::string before, after;
  AppendTime(&before, absl::FromUnixMicros(-5));
  AppendTime(&after, absl::FromUnixMicros(5));
  EXPECT_LT(before, after);
}

TEST(KeyCodec, LengthPrefixKeepsSubjectsApart) {
  // "ab" + time must never be read as "a" + something.
  std::string a, ab;
  AppendLengthPrefixed(&a, "a");
  AppendLengthPrefixed(&ab, "ab");
  EXPECT_FALSE(absl::StartsWith(ab, a));
  absl::string_view in = ab;
  absl::string_view s;
  ASSERT_TRUE(ReadLengthPrefixed(&in, &s));
  EXPECT_EQ(s, "ab");
}

TEST(KeyCodec, TruncatedInputIsRefused) {
  std::string k;
  AppendU64(&k, 7);
  absl::string_view in = absl::string_view(k).substr(0, 7);
  uint64_t v;
  EXPECT_FALSE(ReadU64(&in, &v));
  EXPECT_EQ(in.size(), 7u);
  std::string lp;
  AppendLengthPrefixed(&lp, "hello");
  absl::string_view short_lp = absl::string_view(lp).substr(0, 6);
  absl::string_view s;
  EXPECT_FALSE(ReadLengthPrefixed(&short_lp, &s));
}

TEST(KeyCodec, PrefixSuccessorBoundsEveryExtension) {
  const std::string prefix("ab\xff", 3);
  const std::string succ = PrefixSuccessor(prefix);
  EXPECT_EQ(succ, "ac");
  EXPECT_LT(prefix + std::string(10, '\xff'), succ);
  EXPECT_EQ(PrefixSuccessor(std::string(2, '\xff')), "");
}

TEST(Timestamps, RoundTripIncludingTimesBeforeTheEpoch) {
  for (absl::Time t : {absl::UnixEpoch(), absl::FromUnixNanos(1'700'000'000'123'456'789),
                       absl::FromUnixNanos(-1), absl::FromUnixNanos(-1'500'000'000)}) {
    google::protobuf::Timestamp ts;
    TimeToProto(t, &ts);
    EXPECT_GE(ts.nanos(), 0);
    EXPECT_LT(ts.nanos(), 1'000'000'000);
    EXPECT_EQ(TimeFromProto(ts), t);
  }
  google::protobuf::Timestamp ts;
  TimeToProto(absl::FromUnixNanos(-1), &ts);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999'999'999);
}

TEST(Sha256, MatchesKnownVector) {
  EXPECT_EQ(ToHex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, HexRoundTripsAndRejectsBadInput) {
  const Digest d = Sha256("x");
  EXPECT_EQ(DigestFromHex(ToHex(d)), d);
  EXPECT_FALSE(DigestFromHex("abc").has_value());
  EXPECT_FALSE(DigestFromHex(std::string(64, 'g')).has_value());
}

TEST(Sha256, ChainDependsOnOrder) {
  const Digest a = Sha256("a"), b = Sha256("b");
  EXPECT_NE(ChainNext(ChainNext(kChainGenesis, a), b), ChainNext(ChainNext(kChainGenesis, b), a));
}

}  // namespace
}  // namespace predlog::storage
