// ReplayTransport: scripted server bytes, checked and recorded client bytes, injected failures.
#include "replay_transport.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace el::testing {

using imap::Error;
using imap::ErrorKind;

std::vector<Step> parse_script(const std::string& text) {
  std::vector<Step> steps;
  std::istringstream in(text);
  std::string line;
  std::string literal;
  std::size_t literal_at = std::string::npos;  // step whose {@} awaits its size
  auto close_literal = [&] {
    if (literal_at == std::string::npos) return;
    auto& b = steps[literal_at].bytes;
    auto pos = b.rfind("{@}");
    b.replace(pos, 3, "{" + std::to_string(literal.size()) + "}");
    b += literal;
    literal.clear();
    literal_at = std::string::npos;
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("L:", 0) == 0) {
      if (literal_at == std::string::npos) throw std::runtime_error("L: without {@}: " + line);
      literal += line.size() > 3 ? line.substr(3) : std::string();
      literal += "\r\n";
      continue;
    }
    close_literal();
    if (line.empty() || line[0] == '#') continue;
    if (line == "HANG") {
      steps.push_back({Step::hang, {}});
    } else if (line == "C:") {
      steps.push_back({Step::client, "\r\n"});
    } else if (line.rfind("C: ", 0) == 0) {
      steps.push_back({Step::client, line.substr(3) + "\r\n"});
    } else if (line.rfind("S: ", 0) == 0) {
      std::string bytes = line.substr(3) + "\r\n";
      bool lit = line.size() >= 3 && line.compare(line.size() - 3, 3, "{@}") == 0;
      steps.push_back({Step::server, bytes});
      if (lit) literal_at = steps.size() - 1;
    } else if (line.rfind("P: ", 0) == 0) {
      steps.push_back({Step::server, line.substr(3)});
    } else {
      throw std::runtime_error("bad script line: " + line);
    }
  }
  close_literal();
  return steps;
}

std::vector<Step> load_script(const std::string& path) {
  std::ifstream f(std::string(EL_FIXTURES_DIR) + "/" + path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open fixture " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_script(ss.str());
}

std::string server_bytes(const std::vector<Step>& script) {
  std::string out;
  for (const auto& s : script) {
    if (s.kind == Step::server) out += s.bytes;
  }
  return out;
}

ReplayTransport::ReplayTransport(net::any_io_executor ex, std::vector<Step> script,
                                 std::shared_ptr<ReplayState> state, std::size_t chunk)
    : ex_(ex), script_(std::move(script)), state_(std::move(state)), chunk_(chunk), wake_(ex) {
  state_->steps = script_.size();
  update_state();
}

void ReplayTransport::maybe_fail(const char* what) {
  if (++state_->ops == state_->fail_at) {
    state_->injected = true;
    throw Error(ErrorKind::io, std::string("injected failure in ") + what);
  }
}

// The client and the server each have a cursor in the script: the server may have sent more
// than the client has read (a client may send DONE before it reads everything the server
// pushed), but the server never reads ahead of what the client wrote: a server step after a
// client step waits until the client has sent it.
net::awaitable<std::size_t> ReplayTransport::read_some(net::mutable_buffer buf) {
  maybe_fail("read");
  if (state_->closed) throw Error(ErrorKind::io, "read after close");
  while (true) {
    if (cancelled_) {
      cancelled_ = false;
      throw Error(ErrorKind::io, "read cancelled");
    }
    std::size_t& i = server_step_;
    while (i < script_.size() && script_[i].kind == Step::client && i < client_step_) ++i;
    update_state();
    if (i < script_.size() && script_[i].kind == Step::server) {
      const std::string& b = script_[i].bytes;
      std::size_t n = std::min({buf.size(), b.size() - server_offset_, chunk_});
      std::memcpy(buf.data(), b.data() + server_offset_, n);
      server_offset_ += n;
      if (server_offset_ == b.size()) {
        ++i;
        server_offset_ = 0;
      }
      update_state();
      co_return n;
    }
    if (i >= script_.size()) throw Error(ErrorKind::io, "connection closed by server");
    // The server waits for the client (or hangs): block until a write or cancel() wakes us.
    reading_ = true;
    wake_.expires_at(net::steady_timer::time_point::max());
    co_await wake_.async_wait(net::as_tuple(net::use_awaitable));
    reading_ = false;
  }
}

net::awaitable<void> ReplayTransport::write_all(std::string_view data) {
  maybe_fail("write");
  if (state_->closed) throw Error(ErrorKind::io, "write after close");
  state_->writes.emplace_back(data);
  std::size_t& i = client_step_;
  while (!data.empty()) {
    // The next client step: server steps and HANG are skipped (a silent server still reads).
    while (i < script_.size() && script_[i].kind != Step::client) ++i;
    if (i >= script_.size()) {
      if (state_->mismatch.empty()) {
        state_->mismatch = "unexpected client bytes: " + std::string(data);
      }
      throw Error(ErrorKind::io, "replay mismatch");
    }
    const std::string& want = script_[i].bytes;
    std::size_t n = std::min(data.size(), want.size() - client_offset_);
    if (data.substr(0, n) != std::string_view(want).substr(client_offset_, n)) {
      if (state_->mismatch.empty()) {
        state_->mismatch = "expected: " + want.substr(client_offset_) + "got: " + std::string(data);
      }
      throw Error(ErrorKind::io, "replay mismatch");
    }
    data.remove_prefix(n);
    client_offset_ += n;
    if (client_offset_ == want.size()) {
      ++i;
      client_offset_ = 0;
    }
  }
  update_state();
  wake_.cancel();
  co_return;
}

void ReplayTransport::update_state() {
  std::size_t c = client_step_;
  while (c < script_.size() && script_[c].kind != Step::client) ++c;
  state_->client_done = c == script_.size() && client_offset_ == 0;
  state_->step = server_step_;
}

net::awaitable<void> ReplayTransport::start_tls() {
  maybe_fail("start_tls");
  state_->tls_started = true;
  co_return;
}

void ReplayTransport::cancel() {
  if (!reading_) return;  // like a socket: cancel() only affects pending operations
  cancelled_ = true;
  wake_.cancel();
}

void ReplayTransport::close() {
  state_->closed = true;
  cancel();
}

}  // namespace el::testing
