#include "amqp/url.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>

using namespace el::amqp;

TEST(AmqpUrl, Defaults) {
  const auto u = parse_url("amqp://broker.example");
  EXPECT_EQ(u.host, "broker.example");
  EXPECT_EQ(u.port, 5672);
  EXPECT_EQ(u.user, "guest");
  EXPECT_EQ(u.password.reveal(), "guest");
  EXPECT_EQ(u.vhost, "/");
  EXPECT_EQ(parse_url("amqp://h/").vhost, "/");
}

TEST(AmqpUrl, CredentialsPortAndEncodedVhost) {
  const auto u = parse_url("amqp://us%40er:p%3Ass%2Fw@10.0.0.5:5673/%2f");
  EXPECT_EQ(u.user, "us@er");
  EXPECT_EQ(u.password.reveal(), "p:ss/w");
  EXPECT_EQ(u.host, "10.0.0.5");
  EXPECT_EQ(u.port, 5673);
  EXPECT_EQ(u.vhost, "/");
  EXPECT_EQ(parse_url("amqp://u:p@h/prod").vhost, "prod");
  EXPECT_EQ(parse_url("amqp://u:p@[::1]:5672/v").host, "::1");
}

TEST(AmqpUrl, DisplayNeverShowsCredentials) {
  const auto u = parse_url("amqp://user:s3cret@h:1234/%2f");
  EXPECT_EQ(u.display(), "h:1234/%2f");
  std::ostringstream os;
  os << u.password;
  EXPECT_EQ(os.str(), "***");
  EXPECT_EQ(parse_url("amqp://[::1]:5/v").display(), "[::1]:5/v");
}

TEST(AmqpUrl, ExchangeIsTheLastSegment) {
  auto u = parse_exchange_url("amqp://u:p@h:5672/%2f/events");
  EXPECT_EQ(u.vhost, "/");
  EXPECT_EQ(u.exchange, "events");
  u = parse_exchange_url("amqp://u:p@h/prod/mail.events");
  EXPECT_EQ(u.vhost, "prod");
  EXPECT_EQ(u.exchange, "mail.events");
  u = parse_exchange_url("amqp://h/events");
  EXPECT_EQ(u.vhost, "/");
  EXPECT_EQ(u.exchange, "events");
}

TEST(AmqpUrl, RejectsWhatItCannotUse) {
  for (const char* bad : {"http://h/", "amqps://h/", "amqp:///v", "amqp://h:0/", "amqp://h/a/b",
                          "amqp://h/?heartbeat=10", "not a url", "amqp://:p@h/"}) {
    EXPECT_THROW(parse_url(bad), std::invalid_argument) << bad;
  }
  for (const char* bad : {"amqp://h", "amqp://h/", "amqp://h/v/", "amqp://h/a/b/c"}) {
    EXPECT_THROW(parse_exchange_url(bad), std::invalid_argument) << bad;
  }
}

TEST(AmqpUrl, ErrorsDoNotQuoteThePassword) {
  try {
    parse_url("amqps://user:topsecret@h/");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("topsecret"), std::string::npos);
  }
}
