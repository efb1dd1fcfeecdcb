// The HTTP API server (Boost.Beast, coroutines): auth, body limits, routing to MailboxApi.
#pragma once
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "service/api.hpp"

namespace el::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;        // 0: any free port (see ApiServer::port)
  std::vector<std::string> tokens;  // accepted bearer tokens; empty: no authentication
  // POST /v1/mailboxes/{id}/send: room for 25 MB of attachments, base64-encoded.
  std::size_t max_body = 40u << 20;
  std::size_t max_settings_body = 1u << 20;  // every other route
  std::chrono::milliseconds read_timeout{30000};
};

class ApiServer {
 public:
  // api must outlive the server. Thread-safe: connections run on the io_context's threads.
  ApiServer(boost::asio::io_context& ioc, ServerOptions opts, service::MailboxApi& api);
  ~ApiServer();
  void start();                // binds and listens; throws on bind failure
  void stop();                 // closes the listener and open connections
  std::uint16_t port() const;  // the bound port

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace el::http
