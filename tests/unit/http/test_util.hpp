// Helpers for driving el::http::handle() without sockets.
#pragma once
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <string>
#include <vector>

#include "fake_api.hpp"
#include "http/router.hpp"

namespace el::http::testing {

inline Request make_request(bhttp::verb method, std::string target, std::string body = {},
                            std::string content_type = "application/json") {
  Request req{method, target, 11};
  req.set(bhttp::field::host, "localhost");
  if (!body.empty()) {
    if (!content_type.empty()) req.set(bhttp::field::content_type, content_type);
    req.body() = std::move(body);
  }
  req.prepare_payload();
  return req;
}

inline Response run(const Request& req, service::MailboxApi& api,
                    const std::vector<std::string>& tokens = {}) {
  boost::asio::io_context ioc;
  auto fut = boost::asio::co_spawn(ioc, handle(req, api, tokens), boost::asio::use_future);
  ioc.run();
  return fut.get();
}

inline boost::json::object json_of(const Response& res) {
  return boost::json::parse(res.body()).as_object();
}

// Checks the error envelope: status, Content-Type, code and field ("" = no field member).
inline void expect_error(const Response& res, unsigned status, std::string_view code,
                         std::string_view field) {
  EXPECT_EQ(res.result_int(), status) << res.body();
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  auto body = json_of(res);
  ASSERT_TRUE(body.contains("error")) << res.body();
  const auto& err = body.at("error").as_object();
  EXPECT_EQ(err.at("code").as_string(), code) << res.body();
  EXPECT_TRUE(err.at("message").is_string());
  if (field.empty()) {
    EXPECT_FALSE(err.contains("field")) << res.body();
  } else {
    ASSERT_TRUE(err.contains("field")) << res.body();
    EXPECT_EQ(err.at("field").as_string(), field) << res.body();
  }
}

}  // namespace el::http::testing
