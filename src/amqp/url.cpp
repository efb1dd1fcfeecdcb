// AMQP URL parsing on Boost.URL: percent-decoding of credentials and vhost, IPv6 literals.
#include "amqp/url.hpp"

#include <boost/url/parse.hpp>
#include <stdexcept>
#include <vector>

namespace el::amqp {

namespace {

struct Parsed {
  Url url;
  std::vector<std::string> segments;  // decoded path segments
};

Parsed parse_common(std::string_view text) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    // The error says where parsing stopped, never echoes the text (it may hold a password).
    throw std::invalid_argument("amqp url: malformed (" + parsed.error().message() + ")");
  }
  const auto& u = *parsed;
  const std::string scheme = u.scheme();
  if (scheme == "amqps") throw std::invalid_argument("amqp url: amqps (TLS) is not supported");
  if (scheme != "amqp") throw std::invalid_argument("amqp url: scheme must be amqp");
  Parsed out;
  out.url.host = u.host_address();
  if (out.url.host.empty()) throw std::invalid_argument("amqp url: no host");
  if (u.has_port()) {
    if (u.port_number() == 0) throw std::invalid_argument("amqp url: bad port");
    out.url.port = u.port_number();
  }
  if (u.has_userinfo()) {
    out.url.user = u.user();
    out.url.password = core::Secret(u.has_password() ? std::string(u.password()) : std::string());
    if (out.url.user.empty()) throw std::invalid_argument("amqp url: empty user name");
  }
  if (u.has_query() || u.has_fragment()) {
    // Silently ignoring options (heartbeat=, connection_timeout=) would surprise more than this.
    throw std::invalid_argument("amqp url: query parameters are not supported");
  }
  for (auto seg : u.segments()) out.segments.push_back(seg);
  return out;
}

}  // namespace

std::string Url::display() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
         (vhost == "/" ? std::string("%2f") : vhost);
}

Url parse_url(std::string_view text) {
  auto p = parse_common(text);
  if (p.segments.size() > 1) {
    throw std::invalid_argument("amqp url: the path must be one vhost (encode '/' as %2f)");
  }
  if (!p.segments.empty() && !p.segments.front().empty()) p.url.vhost = p.segments.front();
  return std::move(p.url);
}

Url parse_exchange_url(std::string_view text) {
  auto p = parse_common(text);
  if (p.segments.empty() || p.segments.size() > 2) {
    throw std::invalid_argument("amqp url: expected /vhost/exchange or /exchange as the path");
  }
  if (p.segments.size() == 2 && !p.segments.front().empty()) p.url.vhost = p.segments.front();
  p.url.exchange = p.segments.back();
  if (p.url.exchange.empty()) throw std::invalid_argument("amqp url: empty exchange name");
  return std::move(p.url);
}

}  // namespace el::amqp
