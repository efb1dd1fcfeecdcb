// Routing, auth, success paths, domain-error mapping and /metrics, driven through handle().
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include "core/metrics.hpp"
#include "http/internal.hpp"
#include "test_util.hpp"

namespace el::http {
namespace {

namespace json = boost::json;
using service::Errc;
using service::Outcome;
using testing::expect_error;
using testing::FakeApi;
using testing::json_of;
using testing::make_request;
using testing::run;

constexpr const char* kBody =
    R"({"email":"a@example.com","imap":{"host":"h","username":"u","password":"hunter2"}})";

Request with_token(Request req, std::string_view value) {
  req.set(bhttp::field::authorization, value);
  return req;
}

// ---- success paths ----

TEST(Router, CreateReturns201WithLocation) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes", kBody), api);
  EXPECT_EQ(res.result_int(), 201);
  EXPECT_EQ(res[bhttp::field::location], "/v1/mailboxes/mb1");
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  EXPECT_EQ(json_of(res), (json::object{{"id", "mb1"}, {"state", "connecting"}}));
  auto rec = api.recorded();
  ASSERT_EQ(rec.calls, std::vector<std::string>{"add"});
  EXPECT_EQ(rec.cfg->email, "a@example.com");
  EXPECT_EQ(rec.cfg->id, "");
}

TEST(Router, CreateAcceptsJsonWithCharset) {
  FakeApi api;
  auto res = run(
      make_request(bhttp::verb::post, "/v1/mailboxes", kBody, "Application/JSON; charset=utf-8"),
      api);
  EXPECT_EQ(res.result_int(), 201);
}

TEST(Router, CreateNeedsJsonContentType) {
  for (const char* ct : {"text/plain", "application/x-www-form-urlencoded", ""}) {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes", kBody, ct), api);
    expect_error(res, 415, "unsupported_media_type", "");
    EXPECT_TRUE(api.calls().empty()) << ct;
  }
  FakeApi api;
  auto res = run(make_request(bhttp::verb::put, "/v1/mailboxes/mb1", kBody, "text/json"), api);
  expect_error(res, 415, "unsupported_media_type", "");
}

TEST(Router, CreateExistingIdIs409) {
  FakeApi api;
  api.answer(Outcome::fail(Errc::already_exists, "mailbox mb1 exists", "id"));
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes", kBody), api);
  expect_error(res, 409, "already_exists", "id");
  EXPECT_FALSE(res.count(bhttp::field::location));
}

TEST(Router, GetReturnsStatusBody) {
  FakeApi api;
  Outcome o;
  o.body = {{"id", "mb1"}, {"state", "idle"}, {"delivered", 3}};
  api.answer(o);
  auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/mb1"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(json_of(res), o.body);
  EXPECT_EQ(api.recorded().id, "mb1");
}

TEST(Router, ListDefaultsAndParameters) {
  {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes"), api);
    EXPECT_EQ(res.result_int(), 200);
    auto rec = api.recorded();
    EXPECT_EQ(rec.calls, std::vector<std::string>{"list"});
    EXPECT_EQ(rec.limit, 100u);
    EXPECT_EQ(rec.cursor, "");
  }
  for (auto [q, limit, cursor] :
       {std::tuple{"?limit=1&cursor=abc", 1u, "abc"}, std::tuple{"?limit=1000", 1000u, ""},
        std::tuple{"?cursor=a%2Eb&limit=007", 7u, "a.b"}}) {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, std::string("/v1/mailboxes") + q), api);
    EXPECT_EQ(res.result_int(), 200) << q;
    EXPECT_EQ(api.recorded().limit, limit) << q;
    EXPECT_EQ(api.recorded().cursor, cursor) << q;
  }
}

TEST(Router, ListRejectsBadParameters) {
  for (auto [q, code, field] :
       {std::tuple{"?limit=0", "invalid_value", "limit"},
        std::tuple{"?limit=1001", "invalid_value", "limit"},
        std::tuple{"?limit=-1", "invalid_value", "limit"},
        std::tuple{"?limit=abc", "invalid_value", "limit"},
        std::tuple{"?limit=", "invalid_value", "limit"},
        std::tuple{"?limit", "invalid_value", "limit"},
        std::tuple{"?limit=99999999999999999999999", "invalid_value", "limit"},
        std::tuple{"?limit=5&limit=6", "invalid_value", "limit"},
        std::tuple{"?cursor=a%20b", "invalid_value", "cursor"},
        std::tuple{"?curosr=x", "unknown_field", "curosr"}}) {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, std::string("/v1/mailboxes") + q), api);
    SCOPED_TRACE(q);
    expect_error(res, 400, code, field);
    EXPECT_TRUE(api.calls().empty());
  }
}

TEST(Router, UpdateUsesPathIdAndMask) {
  FakeApi api;
  Outcome o;
  o.body = {{"id", "mb1"}, {"state", "connecting"}};
  api.answer(o);
  auto res = run(make_request(bhttp::verb::put, "/v1/mailboxes/mb1",
                              R"({"email":"a@b","imap":{"host":"h","username":"u"},
                                  "webhook":{"url":"https://x.test/h"}})"),
                 api);
  EXPECT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(json_of(res), o.body);
  auto rec = api.recorded();
  ASSERT_EQ(rec.calls, std::vector<std::string>{"update"});
  EXPECT_EQ(rec.cfg->id, "mb1");
  EXPECT_TRUE(rec.mask.keep_password);
  EXPECT_TRUE(rec.mask.keep_webhook_secret);
}

TEST(Router, UpdateBodyIdMustMatchPath) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::put, "/v1/mailboxes/mb1",
                              R"({"id":"mb1","email":"a@b","imap":{"host":"h","username":"u"}})"),
                 api);
  EXPECT_EQ(res.result_int(), 200);
  res = run(make_request(bhttp::verb::put, "/v1/mailboxes/mb1",
                         R"({"id":"mb2","email":"a@b","imap":{"host":"h","username":"u"}})"),
            api);
  expect_error(res, 400, "invalid_value", "id");
  EXPECT_EQ(api.calls().size(), 1u);
}

TEST(Router, DeleteReturns204WithoutBody) {
  FakeApi api;
  api.answer(Outcome{});
  auto res = run(make_request(bhttp::verb::delete_, "/v1/mailboxes/mb1"), api);
  EXPECT_EQ(res.result_int(), 204);
  EXPECT_TRUE(res.body().empty());
  EXPECT_FALSE(res.count(bhttp::field::content_type));
  EXPECT_FALSE(res.count(bhttp::field::content_length));
  EXPECT_EQ(api.recorded().calls, std::vector<std::string>{"remove"});
  EXPECT_EQ(api.recorded().id, "mb1");
}

TEST(Router, BadPathIdIs400) {
  for (const char* target : {"/v1/mailboxes/a%20b", "/v1/mailboxes/a%2Fb", "/v1/mailboxes/%2E%2E",
                             "/v1/mailboxes/%C3%A9"}) {
    for (auto verb : {bhttp::verb::get, bhttp::verb::delete_}) {
      FakeApi api;
      auto res = run(make_request(verb, target), api);
      SCOPED_TRACE(target);
      expect_error(res, 400, "invalid_value", "id");
      EXPECT_TRUE(api.calls().empty());
    }
  }
  FakeApi api;
  auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/" + std::string(129, 'a')), api);
  expect_error(res, 400, "invalid_value", "id");
  res = run(make_request(bhttp::verb::get, "/v1/mailboxes/" + std::string(128, 'a')), api);
  EXPECT_EQ(res.result_int(), 200);
}

TEST(Router, KeepAliveFollowsTheRequest) {
  FakeApi api;
  auto req = make_request(bhttp::verb::get, "/healthz");
  EXPECT_TRUE(run(req, api).keep_alive());
  req.keep_alive(false);
  EXPECT_FALSE(run(req, api).keep_alive());
  req.version(10);
  req.keep_alive(false);
  auto res = run(req, api);
  EXPECT_EQ(res.version(), 10u);
  EXPECT_FALSE(res.keep_alive());
}

// ---- routing ----

TEST(Router, UnknownRoutesAre404) {
  for (const char* target : {"/", "/v1", "/v2/mailboxes", "/v1/mailboxes/", "/v1/mailboxes/a/b",
                             "/healthz/x", "/V1/mailboxes"}) {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, target), api);
    SCOPED_TRACE(target);
    expect_error(res, 404, "not_found", "");
    EXPECT_TRUE(api.calls().empty());
  }
}

TEST(Router, AbsoluteFormTargetIsRouted) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::get, "http://localhost:8080/v1/mailboxes/mb1"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(api.recorded().id, "mb1");
}

TEST(Router, MalformedTargetIs400) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/%zz"), api);
  expect_error(res, 400, "bad_request", "");
}

TEST(Router, WrongMethodIs405WithAllow) {
  for (auto [verb, target, allow] :
       {std::tuple{bhttp::verb::delete_, "/v1/mailboxes", "GET, POST"},
        std::tuple{bhttp::verb::put, "/v1/mailboxes", "GET, POST"},
        std::tuple{bhttp::verb::post, "/v1/mailboxes/mb1", "GET, PUT, DELETE"},
        std::tuple{bhttp::verb::patch, "/v1/mailboxes/mb1", "GET, PUT, DELETE"},
        std::tuple{bhttp::verb::post, "/healthz", "GET"},
        std::tuple{bhttp::verb::delete_, "/readyz", "GET"},
        std::tuple{bhttp::verb::put, "/metrics", "GET"}}) {
    FakeApi api;
    auto res = run(make_request(verb, target, verb == bhttp::verb::get ? "" : kBody), api);
    SCOPED_TRACE(target);
    expect_error(res, 405, "method_not_allowed", "");
    EXPECT_EQ(res[bhttp::field::allow], allow);
    EXPECT_TRUE(api.calls().empty());
  }
}

// ---- validate, send, folders, sync, sends ----

constexpr const char* kSendBody =
    R"({"to":["bob@example.com",{"address":"carol@example.com","name":"Carol"}],"subject":"Hi",
        "text":"hello"})";
constexpr const char* kSyncBody =
    R"({"since":"2026-01-01T00:00:00Z","until":"2026-01-31T00:00:00Z","folders":["INBOX"]})";

Request with_header(Request req, std::string_view name, std::string_view value) {
  req.set(name, value);
  return req;
}

TEST(Router, ValidatePostIsTheCredentialCheck) {
  FakeApi api;
  api.answer(Outcome{{}, json::object{{"valid", true}, {"imap", json::object{{"ok", true}}}}});
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes/validate", kBody), api);
  EXPECT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(json_of(res).at("valid"), true);
  EXPECT_FALSE(res.count(bhttp::field::location));
  auto rec = api.recorded();
  ASSERT_EQ(rec.calls, std::vector<std::string>{"validate"});
  ASSERT_TRUE(rec.cfg);
  EXPECT_EQ(rec.cfg->email, "a@example.com");
  EXPECT_EQ(rec.cfg->imap.password.reveal(), "hunter2");
}

TEST(Router, ValidateChecksTheBodyLikeCreate) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes/validate",
                              R"({"email":"a@example.com","imap":{"host":"h","username":"u",
                                  "password":"p","bogus":1}})"),
                 api);
  expect_error(res, 400, "unknown_field", "imap.bogus");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/validate", R"({"email":"a@b"})"), api);
  expect_error(res, 400, "missing_field", "imap");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/validate", kBody, "text/plain"), api);
  expect_error(res, 415, "unsupported_media_type", "");
  EXPECT_TRUE(api.calls().empty());
  api.answer(Outcome::fail(Errc::bad_gateway, "imap: connection refused"));
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/validate", kBody), api);
  expect_error(res, 502, "mail_server_error", "");
}

TEST(Router, OtherMethodsOnValidateReachTheMailboxNamedValidate) {
  {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/validate"), api);
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(api.recorded().calls, std::vector<std::string>{"get"});
    EXPECT_EQ(api.recorded().id, "validate");
  }
  {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::put, "/v1/mailboxes/validate", kBody), api);
    EXPECT_EQ(res.result_int(), 200) << res.body();
    auto rec = api.recorded();
    EXPECT_EQ(rec.calls, std::vector<std::string>{"update"});
    EXPECT_EQ(rec.cfg->id, "validate");
  }
  {
    FakeApi api;
    api.answer(Outcome{});
    auto res = run(make_request(bhttp::verb::delete_, "/v1/mailboxes/validate"), api);
    EXPECT_EQ(res.result_int(), 204);
    EXPECT_EQ(api.recorded().calls, std::vector<std::string>{"remove"});
    EXPECT_EQ(api.recorded().id, "validate");
  }
  {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::patch, "/v1/mailboxes/validate", kBody), api);
    expect_error(res, 405, "method_not_allowed", "");
    EXPECT_EQ(res[bhttp::field::allow], "GET, PUT, DELETE");
    EXPECT_TRUE(api.calls().empty());
  }
  {
    // A mailbox may itself be called "validate" and have routes below it.
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/validate/folders"), api);
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(api.recorded().calls, std::vector<std::string>{"folders"});
    EXPECT_EQ(api.recorded().id, "validate");
  }
}

TEST(Router, SendReturns202WithLocationAndPassesTheIdempotencyKey) {
  FakeApi api;
  api.answer(Outcome{
      {}, json::object{{"send_id", "snd-42"}, {"message_id", "m1@x.test"}, {"state", "queued"}}});
  auto req = with_header(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send", kSendBody),
                         "Idempotency-Key", "order-7");
  auto res = run(req, api);
  EXPECT_EQ(res.result_int(), 202) << res.body();
  EXPECT_EQ(res[bhttp::field::location], "/v1/sends/snd-42");
  EXPECT_EQ(res[bhttp::field::content_type], "application/json");
  EXPECT_EQ(json_of(res).at("send_id"), "snd-42");
  auto rec = api.recorded();
  ASSERT_EQ(rec.calls, std::vector<std::string>{"send"});
  EXPECT_EQ(rec.id, "mb1");
  ASSERT_TRUE(rec.send);
  EXPECT_EQ(rec.send->idempotency_key, "order-7");
  ASSERT_EQ(rec.send->message.to.size(), 2u);
  EXPECT_EQ(rec.send->message.to[1].address, "carol@example.com");
  EXPECT_EQ(rec.send->message.to[1].name, "Carol");
  EXPECT_EQ(rec.send->message.subject, "Hi");
  EXPECT_EQ(rec.send->message.text, "hello");
  EXPECT_EQ(rec.send->body_hash.size(), 64u);
}

TEST(Router, SendWithoutIdempotencyKeyOrSendId) {
  FakeApi api;
  api.answer(Outcome{{}, json::object{{"state", "queued"}}});
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send", kSendBody), api);
  EXPECT_EQ(res.result_int(), 202);
  EXPECT_FALSE(res.count(bhttp::field::location)) << "no send_id, no Location";
  EXPECT_EQ(api.recorded().send->idempotency_key, "");
}

TEST(Router, SendRefusesBadInputBeforeTheService) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send",
                              R"({"to":["bob@example.com",{"address":"nope"}]})"),
                 api);
  expect_error(res, 400, "invalid_value", "to[1].address");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send", R"({"subject":"x"})"), api);
  expect_error(res, 400, "missing_field", "to");
  res = run(with_header(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send", kSendBody),
                        "Idempotency-Key", std::string(256, 'k')),
            api);
  expect_error(res, 400, "invalid_value", "Idempotency-Key");
  res =
      run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send", kSendBody, "text/plain"), api);
  expect_error(res, 415, "unsupported_media_type", "");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/a%20b/send", kSendBody), api);
  expect_error(res, 400, "invalid_value", "id");
  EXPECT_TRUE(api.calls().empty());
}

TEST(Router, SendFailuresMapToStatusesWithoutLocation) {
  struct Case {
    Errc errc;
    unsigned status;
    const char* code;
    const char* field;
  };
  for (auto c : {Case{Errc::conflict, 409, "conflict", "Idempotency-Key"},
                 Case{Errc::not_found, 404, "not_found", ""},
                 Case{Errc::invalid_argument, 400, "invalid_value", "from"},
                 Case{Errc::unavailable, 503, "unavailable", ""}}) {
    FakeApi api;
    api.answer(Outcome::fail(c.errc, "details", c.field));
    auto res = run(with_header(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/send", kSendBody),
                               "Idempotency-Key", "k"),
                   api);
    SCOPED_TRACE(c.code);
    expect_error(res, c.status, c.code, c.field);
    EXPECT_FALSE(res.count(bhttp::field::location));
  }
}

TEST(Router, FoldersListed) {
  FakeApi api;
  api.answer(Outcome{{}, json::object{{"items", json::array{json::object{{"name", "INBOX"}}}}}});
  auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/mb1/folders"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(json_of(res).at("items").as_array().size(), 1u);
  EXPECT_EQ(api.recorded().calls, std::vector<std::string>{"folders"});
  EXPECT_EQ(api.recorded().id, "mb1");

  api.answer(Outcome::fail(Errc::bad_gateway, "LIST refused"));
  res = run(make_request(bhttp::verb::get, "/v1/mailboxes/mb1/folders"), api);
  expect_error(res, 502, "mail_server_error", "");
  EXPECT_EQ(json_of(res).at("error").at("message"), "LIST refused");
}

TEST(Router, SyncReturns202) {
  FakeApi api;
  api.answer(Outcome{{}, json::object{{"sync_id", "sy1"}, {"state", "running"}}});
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/sync", kSyncBody), api);
  EXPECT_EQ(res.result_int(), 202) << res.body();
  EXPECT_EQ(json_of(res).at("sync_id"), "sy1");
  EXPECT_FALSE(res.count(bhttp::field::location));
  auto rec = api.recorded();
  ASSERT_EQ(rec.calls, std::vector<std::string>{"sync"});
  EXPECT_EQ(rec.id, "mb1");
  ASSERT_TRUE(rec.sync);
  EXPECT_EQ(core::format_rfc3339(rec.sync->since), "2026-01-01T00:00:00.000Z");
  ASSERT_TRUE(rec.sync->until);
  EXPECT_EQ(core::format_rfc3339(*rec.sync->until), "2026-01-31T00:00:00.000Z");
  EXPECT_EQ(rec.sync->folders, std::vector<std::string>{"INBOX"});
}

TEST(Router, SyncRefusesBadInputBeforeTheService) {
  FakeApi api;
  auto res =
      run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/sync", R"({"folders":["x"]})"), api);
  expect_error(res, 400, "missing_field", "since");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/sync",
                         R"({"since":"2026-01-02T00:00:00Z","until":"2026-01-01T00:00:00Z"})"),
            api);
  expect_error(res, 400, "invalid_value", "until");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/sync", kSyncBody,
                         "application/x-www-form-urlencoded"),
            api);
  expect_error(res, 415, "unsupported_media_type", "");
  res = run(make_request(bhttp::verb::post, "/v1/mailboxes/mb1/sync", ""), api);
  expect_error(res, 400, "invalid_json", "");
  EXPECT_TRUE(api.calls().empty());
}

TEST(Router, SendStatusById) {
  FakeApi api;
  api.answer(Outcome{{}, json::object{{"send_id", "snd-42"}, {"state", "sent"}}});
  auto res = run(make_request(bhttp::verb::get, "/v1/sends/snd-42"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(json_of(res).at("state"), "sent");
  EXPECT_EQ(api.recorded().calls, std::vector<std::string>{"get_send"});
  EXPECT_EQ(api.recorded().id, "snd-42");

  api.answer(Outcome::fail(Errc::not_found, "no send with this id", "send_id"));
  res = run(make_request(bhttp::verb::get, "/v1/sends/snd-43"), api);
  expect_error(res, 404, "not_found", "send_id");

  // An id that no send can have is answered without asking the service.
  FakeApi fresh;
  res = run(make_request(bhttp::verb::get, "/v1/sends/a%20b"), fresh);
  expect_error(res, 404, "not_found", "send_id");
  EXPECT_TRUE(fresh.calls().empty());
}

TEST(Router, WrongMethodOnNewRoutesIs405WithAllow) {
  for (auto [verb, target, allow] :
       {std::tuple{bhttp::verb::get, "/v1/mailboxes/mb1/send", "POST"},
        std::tuple{bhttp::verb::put, "/v1/mailboxes/mb1/send", "POST"},
        std::tuple{bhttp::verb::delete_, "/v1/mailboxes/mb1/send", "POST"},
        std::tuple{bhttp::verb::get, "/v1/mailboxes/mb1/sync", "POST"},
        std::tuple{bhttp::verb::patch, "/v1/mailboxes/mb1/sync", "POST"},
        std::tuple{bhttp::verb::post, "/v1/mailboxes/mb1/folders", "GET"},
        std::tuple{bhttp::verb::delete_, "/v1/mailboxes/mb1/folders", "GET"},
        std::tuple{bhttp::verb::post, "/v1/sends/snd-1", "GET"},
        std::tuple{bhttp::verb::delete_, "/v1/sends/snd-1", "GET"},
        std::tuple{bhttp::verb::put, "/v1/sends/snd-1", "GET"}}) {
    FakeApi api;
    auto res = run(make_request(verb, target, verb == bhttp::verb::get ? "" : kSendBody), api);
    SCOPED_TRACE(target);
    expect_error(res, 405, "method_not_allowed", "");
    EXPECT_EQ(res[bhttp::field::allow], allow);
    EXPECT_TRUE(api.calls().empty());
  }
}

TEST(Router, DeeperOrUnknownSubPathsAre404) {
  for (const char* target :
       {"/v1/mailboxes/mb1/send/x", "/v1/mailboxes/mb1/folders/INBOX", "/v1/mailboxes/mb1/sync/1",
        "/v1/mailboxes/mb1/other", "/v1/mailboxes/mb1/Send", "/v1/mailboxes//send", "/v1/sends",
        "/v1/sends/", "/v1/sends/snd-1/x", "/v1/mailboxes/validate/x/y"}) {
    for (auto verb : {bhttp::verb::get, bhttp::verb::post}) {
      FakeApi api;
      auto res = run(make_request(verb, target, verb == bhttp::verb::post ? kSendBody : ""), api);
      SCOPED_TRACE(target);
      expect_error(res, 404, "not_found", "");
      EXPECT_TRUE(api.calls().empty());
    }
  }
}

TEST(Auth, NewRoutesNeedAToken) {
  for (auto [verb, target] : {std::pair{bhttp::verb::post, "/v1/mailboxes/validate"},
                              std::pair{bhttp::verb::post, "/v1/mailboxes/mb1/send"},
                              std::pair{bhttp::verb::get, "/v1/mailboxes/mb1/folders"},
                              std::pair{bhttp::verb::post, "/v1/mailboxes/mb1/sync"},
                              std::pair{bhttp::verb::get, "/v1/sends/snd-1"}}) {
    FakeApi api;
    auto res =
        run(make_request(verb, target, verb == bhttp::verb::post ? kSendBody : ""), api, {"tok"});
    SCOPED_TRACE(target);
    expect_error(res, 401, "unauthorized", "");
    EXPECT_TRUE(api.calls().empty());
  }
}

// ---- auth ----

const std::vector<std::string> kTokens{"s3cret-token", "second-token"};

TEST(Auth, MissingOrWrongTokenIs401) {
  auto base = make_request(bhttp::verb::get, "/v1/mailboxes/mb1");
  std::vector<Request> reqs{base,
                            with_token(base, "Bearer wrong"),
                            with_token(base, "Bearer s3cret-toke"),
                            with_token(base, "Bearer s3cret-token2"),
                            with_token(base, "Bearer "),
                            with_token(base, "Bearer"),
                            with_token(base, "Basic czNjcmV0LXRva2Vu"),
                            with_token(base, "s3cret-token"),
                            with_token(base, "Bearers3cret-token")};
  for (const auto& req : reqs) {
    FakeApi api;
    auto res = run(req, api, kTokens);
    SCOPED_TRACE(std::string(req[bhttp::field::authorization]));
    expect_error(res, 401, "unauthorized", "");
    EXPECT_EQ(res[bhttp::field::www_authenticate], "Bearer");
    EXPECT_TRUE(api.calls().empty());
  }
}

TEST(Auth, EveryApiRouteNeedsAToken) {
  for (auto [verb, target] :
       {std::pair{bhttp::verb::post, "/v1/mailboxes"}, std::pair{bhttp::verb::get, "/v1/mailboxes"},
        std::pair{bhttp::verb::put, "/v1/mailboxes/mb1"},
        std::pair{bhttp::verb::delete_, "/v1/mailboxes/mb1"},
        std::pair{bhttp::verb::get, "/nope"}}) {
    FakeApi api;
    auto res = run(make_request(verb, target, kBody), api, kTokens);
    expect_error(res, 401, "unauthorized", "");
    EXPECT_TRUE(api.calls().empty());
  }
}

TEST(Auth, RightTokenPasses) {
  for (const char* h : {"Bearer s3cret-token", "Bearer second-token", "bearer s3cret-token",
                        "Bearer   s3cret-token "}) {
    FakeApi api;
    auto res =
        run(with_token(make_request(bhttp::verb::get, "/v1/mailboxes/mb1"), h), api, kTokens);
    EXPECT_EQ(res.result_int(), 200) << h;
  }
}

TEST(Auth, ProbesAndMetricsAreOpen) {
  for (const char* target : {"/healthz", "/readyz", "/metrics"}) {
    FakeApi api;
    auto res = run(make_request(bhttp::verb::get, target), api, kTokens);
    EXPECT_EQ(res.result_int(), 200) << target;
  }
}

TEST(Auth, NoTokensConfiguredMeansOpen) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/mb1"), api, {});
  EXPECT_EQ(res.result_int(), 200);
}

TEST(Auth, TokenMatchesIgnoresEmptyTokens) {
  EXPECT_FALSE(internal::token_matches("", {""}));
  EXPECT_FALSE(internal::token_matches("x", {}));
  EXPECT_TRUE(internal::token_matches("x", {"", "x"}));
}

// ---- domain errors ----

TEST(Errors, EachErrcMapsToOneStatus) {
  struct Case {
    Errc errc;
    unsigned status;
    const char* code;
  };
  for (auto c :
       {Case{Errc::not_found, 404, "not_found"}, Case{Errc::already_exists, 409, "already_exists"},
        Case{Errc::invalid_argument, 400, "invalid_value"}, Case{Errc::conflict, 409, "conflict"},
        Case{Errc::bad_gateway, 502, "mail_server_error"},
        Case{Errc::unavailable, 503, "unavailable"}, Case{Errc::internal, 500, "internal"}}) {
    FakeApi api;
    api.answer(Outcome::fail(c.errc, "details", "folders"));
    auto res = run(make_request(bhttp::verb::get, "/v1/mailboxes/mb1"), api);
    SCOPED_TRACE(c.code);
    // Internal failures hide their message and field: they may carry implementation detail.
    expect_error(res, c.status, c.code, c.errc == Errc::internal ? "" : "folders");
    auto msg = json_of(res).at("error").at("message").as_string();
    if (c.errc == Errc::internal) {
      EXPECT_EQ(msg, "internal error");
    } else {
      EXPECT_EQ(msg, "details");
    }
  }
}

TEST(Errors, ToApiErrorTreatsNoneAsInternal) {
  EXPECT_EQ(to_api_error({Errc::none, "", ""}).status, 500u);
  EXPECT_EQ(to_api_error({Errc::not_found, "", ""}).message, "mailbox not found");
}

TEST(Errors, ConflictAndBadGatewayDefaults) {
  auto conflict = to_api_error({Errc::conflict, "", "Idempotency-Key"});
  EXPECT_EQ(conflict.status, 409u);
  EXPECT_EQ(conflict.code, "conflict");
  EXPECT_FALSE(conflict.message.empty());
  EXPECT_EQ(conflict.field, "Idempotency-Key");
  auto gateway = to_api_error({Errc::bad_gateway, "", ""});
  EXPECT_EQ(gateway.status, 502u);
  EXPECT_EQ(gateway.code, "mail_server_error");
  EXPECT_FALSE(gateway.message.empty());
  EXPECT_EQ(to_api_error({Errc::bad_gateway, "IMAP LIST failed: NO", ""}).message,
            "IMAP LIST failed: NO");
}

TEST(Errors, ServiceExceptionBecomes500) {
  FakeApi api;
  api.throw_next();
  auto res = run(make_request(bhttp::verb::post, "/v1/mailboxes", kBody), api);
  expect_error(res, 500, "internal", "");
  EXPECT_EQ(res.body().find("scripted"), std::string::npos);
  // The next request is unaffected.
  res = run(make_request(bhttp::verb::get, "/v1/mailboxes/mb1"), api);
  EXPECT_EQ(res.result_int(), 200);
}

TEST(Errors, ErrorResponseShape) {
  auto res = error_response({422, "x", "y", ""}, 11, false);
  EXPECT_EQ(res.result_int(), 422);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(res.body(), R"({"error":{"code":"x","message":"y"}})");
  EXPECT_EQ(res[bhttp::field::content_length], std::to_string(res.body().size()));
}

// ---- probes and metrics ----

TEST(Probes, HealthAndReadiness) {
  FakeApi api;
  auto res = run(make_request(bhttp::verb::get, "/healthz"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(json_of(res), (json::object{{"status", "ok"}}));
  res = run(make_request(bhttp::verb::get, "/readyz"), api);
  EXPECT_EQ(res.result_int(), 200);
  api.set_ready(false);
  res = run(make_request(bhttp::verb::get, "/readyz"), api);
  EXPECT_EQ(res.result_int(), 503);
  EXPECT_EQ(json_of(res).at("status"), "not_ready");
}

TEST(Nodes, ListedWithGetOnly) {
  FakeApi api;
  api.answer(Outcome{{}, json::object{{"items", json::array{}}}});
  auto res = run(make_request(bhttp::verb::get, "/v1/nodes"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(api.recorded().calls.back(), "nodes");
  res = run(make_request(bhttp::verb::post, "/v1/nodes"), api);
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(res[bhttp::field::allow], "GET");
}

TEST(Metrics, EndpointRendersCountersThenServiceText) {
  metrics::global().events_delivered.fetch_add(2);
  FakeApi api;
  auto res = run(make_request(bhttp::verb::get, "/metrics"), api);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[bhttp::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = res.body();
  for (const char* name :
       {"el_events_delivered_total", "el_events_failed_total", "el_events_dropped_total",
        "el_imap_reconnects_total", "el_imap_auth_failures_total", "el_fetch_bytes_total",
        "el_messages_fetched_total", "el_parse_errors_total"}) {
    EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " counter\n"), std::string::npos) << name;
    EXPECT_NE(text.find(std::string("\n") + name + " "), std::string::npos) << name;
  }
  EXPECT_NE(text.find("# TYPE el_webhook_latency_seconds histogram\n"), std::string::npos);
  const auto service_part = text.find("el_mailboxes{state=\"idle\"} 3\n");
  ASSERT_NE(service_part, std::string::npos);
  EXPECT_GT(service_part, text.find("el_webhook_latency_seconds_count"));
}

TEST(Metrics, HistogramIsCumulative) {
  metrics::Registry r;
  r.events_failed = 5;
  r.webhook_latency.observe(0.0005);
  r.webhook_latency.observe(0.003);
  r.webhook_latency.observe(20);
  const std::string text = internal::render_metrics(r);
  EXPECT_NE(text.find("\nel_events_failed_total 5\n"), std::string::npos);
  for (const char* line :
       {"el_webhook_latency_seconds_bucket{le=\"0.001\"} 1\n",
        "el_webhook_latency_seconds_bucket{le=\"0.0025\"} 1\n",
        "el_webhook_latency_seconds_bucket{le=\"0.005\"} 2\n",
        "el_webhook_latency_seconds_bucket{le=\"10\"} 2\n",
        "el_webhook_latency_seconds_bucket{le=\"+Inf\"} 3\n",
        "el_webhook_latency_seconds_sum 20.0035\n", "el_webhook_latency_seconds_count 3\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << text;
  }
}

// ---- helpers ----

TEST(Ids, Syntax) {
  EXPECT_TRUE(internal::valid_mailbox_id("a"));
  EXPECT_TRUE(internal::valid_mailbox_id("A-z_0.9"));
  EXPECT_TRUE(internal::valid_mailbox_id("..."));
  EXPECT_TRUE(internal::valid_mailbox_id(std::string(128, 'x')));
  EXPECT_FALSE(internal::valid_mailbox_id(""));
  EXPECT_FALSE(internal::valid_mailbox_id("."));
  EXPECT_FALSE(internal::valid_mailbox_id(".."));
  EXPECT_FALSE(internal::valid_mailbox_id(std::string(129, 'x')));
  EXPECT_FALSE(internal::valid_mailbox_id("a+b"));
  EXPECT_FALSE(internal::valid_mailbox_id(std::string("a\0b", 3)));
}

TEST(Ids, TruncateKeepsUtf8Whole) {
  EXPECT_EQ(internal::truncate_utf8("abc", 5), "abc");
  EXPECT_EQ(internal::truncate_utf8("ab\xC3\xA9", 3), "ab");
  EXPECT_EQ(internal::truncate_utf8("ab\xC3\xA9", 4), "ab\xC3\xA9");
}

}  // namespace
}  // namespace el::http
