#include "app/config.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

using namespace el::app;
using Env = std::map<std::string, std::string>;

TEST(Config, Defaults) {
  auto c = parse_serve_config({}, {});
  EXPECT_EQ(c.listen_host, "127.0.0.1");
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_TRUE(c.state_file.empty());
  EXPECT_EQ(c.service.session.idle_refresh, std::chrono::minutes(25));
  EXPECT_EQ(c.service.session.poll_interval, std::chrono::seconds(60));
  EXPECT_EQ(c.service.session.auth_retry, std::chrono::minutes(10));
  EXPECT_EQ(c.service.fetch.max_attachment_bytes, 10u << 20);
  EXPECT_GE(c.threads, 1u);
}

TEST(Config, FlagsEnvAndFileWithPrecedence) {
  const std::string file = "/tmp/el-config-test.json";
  std::ofstream(file) << R"({"webhook_url":"http://file.test/h","log_level":"warn","threads":3,
                             "api_token":["a","b"]})";
  Env env{
      {"EL_WEBHOOK_URL", "http://env.test/h"}, {"EL_STATE_FILE", "/tmp/s.json"}, {"PATH", "/bin"}};
  auto c =
      parse_serve_config({"--config", file, "--listen", "[::1]:9000", "--log-level=debug"}, env);
  EXPECT_EQ(c.listen_host, "::1");
  EXPECT_EQ(c.listen_port, 9000);
  EXPECT_EQ(c.service.default_webhook->url, "http://env.test/h");  // env beats file
  EXPECT_EQ(c.state_file, "/tmp/s.json");
  EXPECT_EQ(c.log_level, el::log::Level::debug);  // flag beats file
  EXPECT_EQ(c.threads, 3u);
  EXPECT_EQ(c.api_tokens, (std::vector<std::string>{"a", "b"}));
  std::remove(file.c_str());
}

TEST(Config, TokensFromEnvAreCommaSeparated) {
  auto c = parse_serve_config({}, {{"EL_API_TOKEN", "t1,t2"}});
  EXPECT_EQ(c.api_tokens, (std::vector<std::string>{"t1", "t2"}));
  auto d = parse_serve_config({"--api-token", "x", "--api-token", "y"}, {{"EL_API_TOKEN", "t1"}});
  EXPECT_EQ(d.api_tokens, (std::vector<std::string>{"x", "y"}));
}

TEST(Config, RefusesUnknownAndBadValuesNamingThem) {
  auto msg = [](std::vector<std::string> args, Env env = {}) {
    try {
      parse_serve_config(args, env);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(msg({"--no-such-flag"}).find("--no-such-flag"), std::string::npos);
  EXPECT_NE(msg({}, {{"EL_WEBHOK_URL", "x"}}).find("EL_WEBHOK_URL"), std::string::npos);
  EXPECT_NE(msg({"--idle-refresh", "soon"}).find("--idle-refresh"), std::string::npos);
  EXPECT_NE(msg({"--listen", "nowhere"}).find("--listen"), std::string::npos);
  EXPECT_NE(msg({"--listen", "127.0.0.1:70000"}).find("--listen"), std::string::npos);
  EXPECT_NE(msg({"--webhook-url", "ftp://x"}).find("--webhook-url"), std::string::npos);
  EXPECT_NE(msg({"--log-format", "xml"}).find("--log-format"), std::string::npos);
  EXPECT_NE(msg({"--threads", "0"}).find("--threads"), std::string::npos);
  EXPECT_NE(msg({"--max-attachment-bytes", "10X"}).find("--max-attachment-bytes"),
            std::string::npos);
  EXPECT_NE(msg({"--state-file"}).find("needs a value"), std::string::npos);
  EXPECT_NE(msg({"stray"}).find("stray"), std::string::npos);
  const std::string file = "/tmp/el-config-bad.json";
  std::ofstream(file) << R"({"webhook_url":"http://x.test/","colour":"blue"})";
  EXPECT_NE(msg({"--config", file}).find("colour"), std::string::npos);
  std::remove(file.c_str());
}

TEST(Config, NonLoopbackNeedsTokenOrExplicitOptOut) {
  EXPECT_THROW(parse_serve_config({"--listen", "0.0.0.0:8080"}, {}), ConfigError);
  EXPECT_NO_THROW(parse_serve_config({"--listen", "0.0.0.0:8080", "--api-token", "t"}, {}));
  EXPECT_NO_THROW(parse_serve_config({"--listen", "0.0.0.0:8080", "--insecure-no-auth"}, {}));
  EXPECT_NO_THROW(parse_serve_config({"--listen", "localhost:8080"}, {}));
}

TEST(Config, DurationsAndSizes) {
  EXPECT_EQ(parse_duration("500ms"), std::chrono::milliseconds(500));
  EXPECT_EQ(parse_duration("10"), std::chrono::seconds(10));
  EXPECT_EQ(parse_duration("5m"), std::chrono::minutes(5));
  EXPECT_EQ(parse_duration("1h"), std::chrono::hours(1));
  EXPECT_THROW(parse_duration("1d"), ConfigError);
  EXPECT_THROW(parse_duration("-1s"), ConfigError);
  EXPECT_EQ(parse_size("10M"), 10u << 20);
  EXPECT_EQ(parse_size("2K"), 2048u);
  EXPECT_THROW(parse_size("M"), ConfigError);
}

TEST(Config, SecretIsNotInUsage) {
  EXPECT_NE(serve_usage().find("--webhook-url"), std::string::npos);
  EXPECT_NE(serve_usage().find("--state-file"), std::string::npos);
}

TEST(Config, SecretKeysAreCheckedAtStartWithoutEchoingThem) {
  const std::string good = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
  auto c = parse_serve_config({}, {{"EL_SECRET_KEY", good}});
  EXPECT_EQ(c.secret_key.reveal(), good);
  try {
    parse_serve_config({}, {{"EL_SECRET_KEY", "dG9vLXNob3J0LWtleQ=="}});
    ADD_FAILURE() << "a 13-byte key was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("EL_SECRET_KEY"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("dG9vLXNob3J0LWtleQ"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_serve_config({}, {{"EL_SECRET_KEY_OLD", good}}), ConfigError);
  EXPECT_THROW(parse_serve_config({"--secret-key", good, "--secret-key-old", "x"}, {}),
               ConfigError);
}
