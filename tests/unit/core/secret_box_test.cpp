#include "core/secret_box.hpp"

#include <gtest/gtest.h>

using el::core::SecretBox;

namespace {
// 32 bytes each, base64.
const char* kKeyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kKeyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
}  // namespace

TEST(SecretBox, SealsAndOpens) {
  auto box = SecretBox::from_base64(kKeyA);
  const std::string sealed = box.seal("hunter2", "mailbox-1");
  EXPECT_TRUE(SecretBox::is_sealed(sealed));
  EXPECT_EQ(sealed.find("hunter2"), std::string::npos);
  EXPECT_EQ(box.open(sealed, "mailbox-1"), "hunter2");
  EXPECT_NE(box.seal("hunter2", "mailbox-1"), sealed) << "the nonce must be random";
  EXPECT_EQ(box.open(box.seal("", "m"), "m"), "");
}

TEST(SecretBox, RefusesAnotherMailboxAlteredTextAndWrongKey) {
  auto box = SecretBox::from_base64(kKeyA);
  const std::string sealed = box.seal("hunter2", "mailbox-1");
  EXPECT_FALSE(box.open(sealed, "mailbox-2")) << "associated data must bind the owner";
  std::string altered = sealed;
  altered[altered.size() - 3] = altered[altered.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(box.open(altered, "mailbox-1"));
  EXPECT_FALSE(SecretBox::from_base64(kKeyB).open(sealed, "mailbox-1"));
  EXPECT_FALSE(box.open("hunter2", "mailbox-1"));
  EXPECT_FALSE(box.open("enc:v1:not-base64!", "mailbox-1"));
}

TEST(SecretBox, OldKeyOpensDuringRotation) {
  const std::string sealed_with_a = SecretBox::from_base64(kKeyA).seal("pw", "m");
  auto rotated = SecretBox::from_base64(kKeyB, kKeyA);
  EXPECT_EQ(rotated.open(sealed_with_a, "m"), "pw");
  // New values are sealed with the new key only.
  EXPECT_FALSE(SecretBox::from_base64(kKeyA).open(rotated.seal("pw", "m"), "m"));
}

TEST(SecretBox, KeysMustBe32BytesOfBase64) {
  EXPECT_THROW(SecretBox::from_base64("c2hvcnQ="), std::invalid_argument);
  EXPECT_THROW(SecretBox::from_base64("not base64 at all"), std::invalid_argument);
  EXPECT_THROW(SecretBox::from_base64(kKeyA, "c2hvcnQ="), std::invalid_argument);
  try {
    SecretBox::from_base64(kKeyA, "c2hvcnQ=");
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("EL_SECRET_KEY_OLD"), std::string::npos);
  }
}

TEST(Base64, RoundTrip) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto enc = el::core::base64_encode(s);
    EXPECT_EQ(el::core::base64_decode(enc), s) << enc;
  }
  EXPECT_EQ(el::core::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_FALSE(el::core::base64_decode("abc"));
}
