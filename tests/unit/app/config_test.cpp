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

// ---- fleet settings (issue 3) ----

namespace {
std::string refusal(std::vector<std::string> args, Env env = {}) {
  try {
    parse_serve_config(args, env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}
const char* kKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // 32 bytes
}  // namespace

TEST(FleetConfig, DefaultsAreTheEmbeddedSingleNode) {
  auto c = parse_serve_config({}, {});
  EXPECT_FALSE(c.redis_store());
  EXPECT_FALSE(c.amqp_queue());
  EXPECT_EQ(c.service.ownership.role, "all");
  EXPECT_FALSE(c.service.ownership.node_id.empty());  // the host name
  EXPECT_EQ(c.service.ownership.capacity, 10000u);
  EXPECT_EQ(c.service.ownership.lease, std::chrono::seconds(15));
  EXPECT_TRUE(c.service.webhook_sink);
  EXPECT_TRUE(c.amqp_sinks.empty());
  EXPECT_EQ(c.queue_type, "quorum");
}

TEST(FleetConfig, ApiNodeWithRedisAndRabbitMQ) {
  auto c = parse_serve_config(
      {"--role", "api", "--node-id", "el-0", "--store", "redis://el:pw@127.0.0.1:6379/2", "--queue",
       "amqp://u:p@127.0.0.1:5672/%2f", "--queue-type", "classic", "--capacity", "500", "--lease",
       "5s", "--sink", "webhook,amqp://u:p@127.0.0.1:5672/%2f/events"},
      {{"EL_SECRET_KEY", kKey}});
  EXPECT_TRUE(c.redis_store());
  EXPECT_TRUE(c.amqp_queue());
  EXPECT_EQ(c.service.ownership.node_id, "el-0");
  EXPECT_EQ(c.service.ownership.capacity, 500u);
  EXPECT_EQ(c.service.ownership.lease, std::chrono::seconds(5));
  EXPECT_EQ(c.queue_type, "classic");
  EXPECT_TRUE(c.service.webhook_sink);
  ASSERT_EQ(c.amqp_sinks.size(), 1u);
  // Only an exchange sink: mailboxes need no webhook.
  auto d = parse_serve_config({"--sink", "amqp://u:p@127.0.0.1:5672/%2f/events"}, {});
  EXPECT_FALSE(d.service.webhook_sink);
}

TEST(FleetConfig, RedisStoreNeedsAKeyUnlessPlaintextIsAllowed) {
  const std::string redis = "redis://127.0.0.1:6379/0";
  auto m = refusal({"--store", redis});
  EXPECT_NE(m.find("EL_SECRET_KEY"), std::string::npos) << m;
  EXPECT_NE(m.find("--allow-plaintext-secrets"), std::string::npos) << m;
  EXPECT_EQ(refusal({"--store", redis, "--allow-plaintext-secrets"}), "(accepted)");
  EXPECT_EQ(refusal({"--store", redis}, {{"EL_SECRET_KEY", kKey}}), "(accepted)");
  EXPECT_NE(refusal({"--store", redis, "--state-file", "/tmp/x"}, {{"EL_SECRET_KEY", kKey}})
                .find("--state-file"),
            std::string::npos);
}

TEST(FleetConfig, RolesNeedTheSharedBackends) {
  EXPECT_NE(refusal({"--role", "worker"}).find("--store redis://"), std::string::npos);
  EXPECT_NE(refusal({"--role", "api"}).find("--store redis://"), std::string::npos);
  EXPECT_NE(refusal({"--role", "worker", "--store", "redis://h:1/0"}, {{"EL_SECRET_KEY", kKey}})
                .find("--queue amqp://"),
            std::string::npos);
  EXPECT_NE(refusal({"--role", "boss"}).find("--role"), std::string::npos);
}

TEST(FleetConfig, BadUrlsAreRefusedWithoutEchoingPasswords) {
  auto m = refusal({"--store", "http://u:secretpw@h/0"});
  EXPECT_NE(m.find("--store"), std::string::npos);
  EXPECT_EQ(m.find("secretpw"), std::string::npos) << m;
  m = refusal({"--queue", "amqps//u:secretpw@h"});
  EXPECT_NE(m.find("--queue"), std::string::npos);
  EXPECT_EQ(m.find("secretpw"), std::string::npos) << m;
  m = refusal({"--sink", "amqp://u:secretpw@h:5672/%2f"});  // no exchange
  EXPECT_NE(m.find("exchange"), std::string::npos) << m;
  EXPECT_EQ(m.find("secretpw"), std::string::npos) << m;
  EXPECT_NE(refusal({"--sink", "kafka"}).find("--sink"), std::string::npos);
  EXPECT_NE(refusal({"--queue-type", "stream"}).find("--queue-type"), std::string::npos);
  EXPECT_NE(refusal({"--lease", "100ms"}).find("--lease"), std::string::npos);
}
