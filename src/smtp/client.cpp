// SMTP submission client: replies read under deadlines through ReplyParser, EHLO extensions,
// STARTTLS, SASL (PLAIN, LOGIN, XOAUTH2), and the MAIL/RCPT/DATA transaction.
#include "smtp/client.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <set>
#include <utility>

#include "smtp/reply_parser.hpp"
#include "smtp/wire.hpp"

namespace el::smtp {

namespace {

using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr std::size_t kReadBuffer = 4 * 1024;
constexpr std::size_t kDataChunk = 64 * 1024;  // DATA goes out in writes of about this size
constexpr std::size_t kMaxReplyInMessage = 512;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A reply for an exception message: one line, printable, bounded.
std::string brief(const Reply& r) {
  std::string s = r.str();
  if (s.size() > kMaxReplyInMessage) s.resize(kMaxReplyInMessage);
  for (char& c : s) {
    if (c == '\n') c = ' ';
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

// An address for an exception message (it may come from a caller's untrusted input).
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 256)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  return out;
}

bool is_2xx(const Reply& r) { return r.code >= 200 && r.code < 300; }

// What a refusal means for the caller: 4xx retry later, 5xx give up; anything else here is a
// reply that makes no sense at this point of the dialogue.
ErrorKind classify(const Reply& r) {
  if (r.code >= 400 && r.code < 500) return ErrorKind::temporary;
  if (r.code >= 500 && r.code < 600) return ErrorKind::permanent;
  return ErrorKind::protocol;
}

// Strings holding credentials: wiped when the coroutine frame that owns them goes away.
struct WipedStrings {
  std::vector<std::string> v;
  WipedStrings() = default;
  WipedStrings(const WipedStrings&) = delete;
  WipedStrings& operator=(const WipedStrings&) = delete;
  ~WipedStrings() {
    for (auto& s : v) OPENSSL_cleanse(s.data(), s.size());
  }
};

std::string sasl_line(std::string_view prefix, std::string& raw) {
  std::string b64 = base64_encode(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  std::string line;
  line.reserve(prefix.size() + b64.size() + 2);
  line += prefix;
  line += b64;
  line += "\r\n";
  OPENSSL_cleanse(b64.data(), b64.size());
  return line;
}

// Addresses go between "<" and ">" on a command line: nothing may break out of either.
bool valid_address(std::string_view a) {
  return a.size() <= 512 && std::none_of(a.begin(), a.end(), [](char c) {
           return static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '<' || c == '>';
         });
}

bool non_ascii(std::string_view a) {
  return std::any_of(a.begin(), a.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

}  // namespace

const char* to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::io:
      return "io";
    case ErrorKind::timeout:
      return "timeout";
    case ErrorKind::tls:
      return "tls";
    case ErrorKind::protocol:
      return "protocol";
    case ErrorKind::auth:
      return "auth";
    case ErrorKind::temporary:
      return "temporary";
    case ErrorKind::permanent:
      return "permanent";
    case ErrorKind::too_large:
      return "too_large";
  }
  return "unknown";
}

std::string Reply::str() const {
  std::string s = std::to_string(code);
  if (!enhanced.empty()) s += " " + enhanced;
  if (!text.empty()) s += " " + text;
  return s;
}

// ---- Engine ------------------------------------------------------------------------------------

struct Client::Impl {
  Impl(std::unique_ptr<imap::Transport> t, ClientOptions o)
      : transport_(std::move(t)), opts_(std::move(o)), deadline_(*transport_) {}

  // -- deadlines: the transport is cancelled when one passes (TransportDeadline).
  void arm(Clock::time_point when) { deadline_.arm(when); }
  void disarm() { deadline_.disarm(); }

  Clock::time_point command_deadline() const { return Clock::now() + opts_.command_timeout; }

  // I/O, timeout, protocol and TLS failures leave the dialogue in an unknown state: the
  // connection is broken. A refusal (4xx/5xx) leaves it usable, except 421 (closing).
  [[noreturn]] void fail(ErrorKind kind, const std::string& msg, Reply reply = {}) {
    if (kind == ErrorKind::io || kind == ErrorKind::timeout || kind == ErrorKind::protocol ||
        kind == ErrorKind::tls || reply.code == 421) {
      broken_ = true;
    }
    throw Error(kind, msg, std::move(reply));
  }
  [[noreturn]] void refuse(ErrorKind kind, const std::string& what, Reply reply) {
    std::string msg = what + ": " + brief(reply);
    fail(kind, msg, std::move(reply));
  }

  void check_usable() const {
    if (broken_) throw Error(ErrorKind::io, "SMTP connection is broken or closed; reconnect");
  }

  [[noreturn]] void fail_io(const imap::Error& e, const char* timeout_msg) {
    if (deadline_.fired() || e.kind() == imap::ErrorKind::timeout) {
      fail(ErrorKind::timeout, timeout_msg);
    }
    fail(e.kind() == imap::ErrorKind::tls ? ErrorKind::tls : ErrorKind::io, e.what());
  }

  net::awaitable<void> write(std::string_view data, Clock::time_point deadline) {
    arm(deadline);
    std::optional<imap::Error> err;
    try {
      co_await transport_->write_all(data);
    } catch (const imap::Error& e) {
      err = e;
    }
    disarm();
    if (err) fail_io(*err, "SMTP write timed out");
  }

  // Reads until the parser yields one reply; false on malformed input.
  net::awaitable<bool> read_loop(Reply& out) {
    while (true) {
      if (rpos_ < rend_) {
        std::size_t used = 0;
        auto res = parser_.parse(std::string_view(rbuf_.data() + rpos_, rend_ - rpos_), used, out);
        rpos_ += used;
        if (res == ReplyParser::Result::done) co_return true;
        if (res == ReplyParser::Result::error) co_return false;
      }
      rpos_ = rend_ = 0;
      const std::size_t n = co_await transport_->read_some(net::buffer(rbuf_));
      rend_ = n;
    }
  }

  // One reply before `deadline`; `what` (a literal) names the command for error messages.
  net::awaitable<Reply> read_reply(Clock::time_point deadline, const char* what) {
    arm(deadline);
    Reply r;
    bool ok = false;
    std::optional<imap::Error> err;
    try {
      ok = co_await read_loop(r);
    } catch (const imap::Error& e) {
      err = e;
    }
    disarm();
    if (err) {
      fail_io(*err, (std::string("SMTP server did not answer ") + what + " in time").c_str());
    }
    if (!ok) {
      fail(ErrorKind::protocol,
           std::string("malformed SMTP reply to ") + what + ": " + parser_.error());
    }
    co_return r;
  }

  // Sends one command line (with its CRLF) and reads its reply.
  net::awaitable<Reply> command(std::string_view line, const char* what) {
    const auto deadline = command_deadline();
    co_await write(line, deadline);
    Reply r = co_await read_reply(deadline, what);
    co_return r;
  }

  net::awaitable<void> ehlo() {
    extensions_.clear();
    const std::string ehlo_line = "EHLO " + opts_.helo_name + "\r\n";
    Reply r = co_await command(ehlo_line, "EHLO");
    if (is_2xx(r)) {
      set_extensions(r);
      co_return;
    }
    // 500/502: an old server without ESMTP. 4xx (421) is not a reason to try HELO.
    if (r.code < 500 || r.code >= 600) refuse(classify(r), "EHLO refused", std::move(r));
    const std::string helo_line = "HELO " + opts_.helo_name + "\r\n";
    Reply h = co_await command(helo_line, "HELO");
    if (!is_2xx(h)) refuse(classify(h), "HELO refused", std::move(h));
  }

  // EHLO reply lines after the first: "KEYWORD params".
  void set_extensions(const Reply& r) {
    extensions_.clear();
    std::string_view text = r.text;
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) return;
    text.remove_prefix(nl + 1);
    while (!text.empty()) {
      nl = text.find('\n');
      std::string_view line = trim(text.substr(0, nl));
      text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
      const auto sp = line.find(' ');
      std::string key = upper(line.substr(0, sp));
      std::string params(sp == std::string_view::npos ? std::string_view() : trim(line.substr(sp)));
      if (key.empty()) continue;
      if (key.rfind("AUTH=", 0) == 0) {  // pre-RFC 4954 servers: "AUTH=LOGIN PLAIN"
        params = key.substr(5) + (params.empty() ? "" : " " + params);
        key = "AUTH";
      }
      auto [it, inserted] = extensions_.emplace(key, params);
      if (!inserted && key == "AUTH") {
        auto have = auth_mechanisms();
        for (const auto& m : split_upper(params)) {
          if (!have.count(m)) it->second += (it->second.empty() ? "" : " ") + m;
        }
      }
    }
  }

  static std::set<std::string> split_upper(std::string_view s) {
    std::set<std::string> out;
    while (!s.empty()) {
      const auto sp = s.find(' ');
      auto word = s.substr(0, sp);
      if (!word.empty()) out.insert(upper(word));
      s.remove_prefix(sp == std::string_view::npos ? s.size() : sp + 1);
    }
    return out;
  }

  std::set<std::string> auth_mechanisms() const {
    auto it = extensions_.find("AUTH");
    return it == extensions_.end() ? std::set<std::string>() : split_upper(it->second);
  }

  bool has(std::string_view keyword) const { return extensions_.count(upper(keyword)) > 0; }

  // SASL exchange: lines[0] is the AUTH command, each 334 challenge gets the next line. A
  // challenge beyond them is answered with `cancel` ("*" per RFC 4954, or the empty line
  // XOAUTH2 wants) and the exchange fails with the final reply. No secret reaches a message.
  net::awaitable<void> authenticate(const char* mech, const WipedStrings& lines,
                                    std::string_view cancel) {
    const auto deadline = command_deadline();
    const std::string what = std::string("AUTH ") + mech;
    std::size_t next = 0;
    Reply r;
    bool cancelled = false;
    std::string challenge;
    while (true) {
      co_await write(lines.v[next++], deadline);
      r = co_await read_reply(deadline, "AUTH");
      if (r.code != 334) break;
      if (next < lines.v.size()) continue;
      // XOAUTH2 puts the error (JSON) in the challenge: worth keeping, it holds no secret.
      if (auto decoded = base64_decode(r.text)) challenge = printable(*decoded);
      co_await write(cancel, deadline);
      r = co_await read_reply(deadline, "AUTH");
      cancelled = true;
      break;
    }
    if (!cancelled && is_2xx(r)) co_return;
    std::string msg = what + " refused: " + brief(r);
    if (!challenge.empty()) msg += " (server said: " + challenge + ")";
    if (r.code == 421 || (!cancelled && r.code >= 400 && r.code < 500)) {
      fail(ErrorKind::temporary, msg, std::move(r));
    }
    if (!cancelled && (r.code < 400 || r.code >= 600)) fail(ErrorKind::protocol, msg, std::move(r));
    fail(ErrorKind::auth, msg, std::move(r));
  }

  // After a refused MAIL/RCPT/DATA: end the transaction so the connection can be reused. A
  // failure here marks the connection broken but never hides the refusal being reported.
  net::awaitable<void> rset_quietly() {
    try {
      Reply r = co_await command("RSET\r\n", "RSET");
      if (!is_2xx(r)) broken_ = true;
    } catch (const std::exception&) {
      broken_ = true;
    }
  }

  // Reports a refused MAIL, RCPT or DATA after RSET (unless the reply makes no sense, which
  // breaks the connection).
  net::awaitable<void> refused(const std::string& what, const Reply& r) {
    const ErrorKind kind = classify(r);
    if (kind != ErrorKind::protocol && r.code != 421) co_await rset_quietly();
    refuse(kind, what, r);
  }

  std::unique_ptr<imap::Transport> transport_;
  ClientOptions opts_;
  ReplyParser parser_;
  std::array<char, kReadBuffer> rbuf_{};
  std::size_t rpos_ = 0, rend_ = 0;
  imap::TransportDeadline deadline_;  // after transport_: it watches it
  std::map<std::string, std::string> extensions_;
  bool broken_ = false;
};

// ---- Client ------------------------------------------------------------------------------------

Client::Client(std::unique_ptr<imap::Transport> transport, ClientOptions opts)
    : impl_(std::make_unique<Impl>(std::move(transport), std::move(opts))) {}

Client::~Client() = default;

const std::map<std::string, std::string>& Client::extensions() const { return impl_->extensions_; }

bool Client::has_extension(std::string_view keyword) const { return impl_->has(keyword); }

std::optional<std::uint64_t> Client::max_size() const {
  auto it = impl_->extensions_.find("SIZE");
  if (it == impl_->extensions_.end()) return std::nullopt;
  std::uint64_t n = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n == 0) return std::nullopt;
  return n;
}

net::awaitable<void> Client::start(bool starttls) {
  Impl& m = *impl_;
  m.check_usable();
  Reply g = co_await m.read_reply(m.command_deadline(), "with a greeting");
  if (g.code != 220) {
    // 421/554: the server does not want us; it closes or waits for QUIT only.
    m.broken_ = true;
    m.refuse(classify(g), "SMTP server refused the connection", std::move(g));
  }
  co_await m.ehlo();
  if (!starttls) co_return;
  // Not offered: the connection is still fine, but the caller must not go on in clear text.
  if (!m.has("STARTTLS")) throw Error(ErrorKind::tls, "SMTP server does not offer STARTTLS");
  Reply r = co_await m.command("STARTTLS\r\n", "STARTTLS");
  if (r.code != 220) {
    m.refuse(classify(r) == ErrorKind::protocol ? ErrorKind::protocol : ErrorKind::tls,
             "STARTTLS refused", std::move(r));
  }
  // Bytes after the 220 came in clear text and would be taken as TLS-protected replies
  // (CVE-2011-0411 style injection): refuse.
  if (m.rpos_ != m.rend_ || !m.parser_.idle()) {
    m.fail(ErrorKind::protocol, "SMTP server sent data after its STARTTLS reply");
  }
  m.arm(m.command_deadline());
  std::optional<imap::Error> err;
  try {
    co_await m.transport_->start_tls();
  } catch (const imap::Error& e) {
    err = e;
  }
  m.disarm();
  if (err) {
    if (m.deadline_.fired() || err->kind() == imap::ErrorKind::timeout) {
      m.fail(ErrorKind::timeout, "STARTTLS handshake timed out");
    }
    m.fail(err->kind() == imap::ErrorKind::io ? ErrorKind::io : ErrorKind::tls, err->what());
  }
  // What the server said before TLS may have been forged (RFC 3207 4.2): ask again.
  co_await m.ehlo();
}

net::awaitable<void> Client::login(std::string_view user, const core::Secret& password) {
  Impl& m = *impl_;
  m.check_usable();
  const auto mechs = m.auth_mechanisms();
  if (!m.has("AUTH")) throw Error(ErrorKind::auth, "SMTP server offers no AUTH");
  WipedStrings lines;
  if (mechs.count("PLAIN")) {
    std::string raw;
    raw.reserve(user.size() + password.reveal().size() + 2);
    raw += '\0';
    raw += user;
    raw += '\0';
    raw += password.reveal();
    lines.v.push_back(sasl_line("AUTH PLAIN ", raw));
    co_await m.authenticate("PLAIN", lines, "*\r\n");
  } else if (mechs.count("LOGIN")) {
    lines.v.emplace_back("AUTH LOGIN\r\n");
    std::string raw_user(user);
    lines.v.push_back(sasl_line("", raw_user));
    std::string raw_pass = password.reveal();
    lines.v.push_back(sasl_line("", raw_pass));
    co_await m.authenticate("LOGIN", lines, "*\r\n");
  } else {
    throw Error(ErrorKind::auth, "SMTP server offers neither AUTH PLAIN nor AUTH LOGIN (AUTH " +
                                     printable(m.extensions_.at("AUTH")) + ")");
  }
}

net::awaitable<void> Client::login_xoauth2(std::string_view user,
                                           const core::Secret& access_token) {
  Impl& m = *impl_;
  m.check_usable();
  if (!m.auth_mechanisms().count("XOAUTH2")) {
    throw Error(ErrorKind::auth, "SMTP server does not offer AUTH XOAUTH2");
  }
  std::string raw;
  raw.reserve(user.size() + access_token.reveal().size() + 24);
  raw += "user=";
  raw += user;
  raw +=
      "\x01"
      "auth=Bearer ";
  raw += access_token.reveal();
  raw += "\x01\x01";
  WipedStrings lines;
  lines.v.push_back(sasl_line("AUTH XOAUTH2 ", raw));
  co_await m.authenticate("XOAUTH2", lines, "\r\n");
}

net::awaitable<SendResult> Client::send(const Envelope& envelope, std::string_view data) {
  Impl& m = *impl_;
  m.check_usable();
  if (envelope.to.empty()) throw Error(ErrorKind::permanent, "no recipients");
  if (!valid_address(envelope.from)) {
    throw Error(ErrorKind::permanent, "invalid sender address <" + printable(envelope.from) + ">");
  }
  bool utf8 = non_ascii(envelope.from);
  for (const auto& to : envelope.to) {
    if (to.empty() || !valid_address(to)) {
      throw Error(ErrorKind::permanent, "invalid recipient address <" + printable(to) + ">");
    }
    utf8 = utf8 || non_ascii(to);
  }
  const DataStats stats = measure_data(data);
  if (auto max = max_size(); max && stats.size > *max) {
    throw Error(ErrorKind::too_large, "message of " + std::to_string(stats.size) +
                                          " octets exceeds the server's limit of " +
                                          std::to_string(*max));
  }

  std::string mail = "MAIL FROM:<" + envelope.from + ">";
  if (m.has("SIZE")) mail += " SIZE=" + std::to_string(stats.size);
  if (stats.eight_bit && m.has("8BITMIME")) mail += " BODY=8BITMIME";
  if (utf8 && m.has("SMTPUTF8")) mail += " SMTPUTF8";
  mail += "\r\n";
  std::vector<std::string> rcpts;
  rcpts.reserve(envelope.to.size());
  for (const auto& to : envelope.to) rcpts.push_back("RCPT TO:<" + to + ">\r\n");

  const std::string sender = "sender <" + printable(envelope.from) + "> refused";
  if (m.has("PIPELINING")) {
    // RFC 2920: MAIL and every RCPT in one write, then their replies in order.
    std::string batch = mail;
    for (const auto& r : rcpts) batch += r;
    co_await m.write(batch, m.command_deadline());
    Reply mail_reply = co_await m.read_reply(m.command_deadline(), "MAIL FROM");
    std::vector<Reply> replies;
    replies.reserve(rcpts.size());
    for (std::size_t i = 0; i < rcpts.size(); ++i) {
      Reply r = co_await m.read_reply(m.command_deadline(), "RCPT TO");
      replies.push_back(std::move(r));
    }
    if (!is_2xx(mail_reply)) co_await m.refused(sender, mail_reply);
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (is_2xx(replies[i])) continue;
      const std::string what = "recipient <" + printable(envelope.to[i]) + "> refused";
      co_await m.refused(what, replies[i]);
    }
  } else {
    Reply mail_reply = co_await m.command(mail, "MAIL FROM");
    if (!is_2xx(mail_reply)) co_await m.refused(sender, mail_reply);
    for (std::size_t i = 0; i < rcpts.size(); ++i) {
      Reply r = co_await m.command(rcpts[i], "RCPT TO");
      if (is_2xx(r)) continue;
      const std::string what = "recipient <" + printable(envelope.to[i]) + "> refused";
      co_await m.refused(what, r);
    }
  }

  Reply data_reply = co_await m.command("DATA\r\n", "DATA");
  if (data_reply.code != 354) {
    if (is_2xx(data_reply)) m.fail(ErrorKind::protocol, "DATA answered " + brief(data_reply));
    const std::string what = "DATA refused";
    co_await m.refused(what, data_reply);
  }

  const auto deadline = Clock::now() + m.opts_.data_timeout;
  DataEncoder enc(data);
  std::string chunk;
  chunk.reserve(std::min<std::size_t>(stats.size + stats.size / 16 + 8, kDataChunk + 8));
  while (!enc.done()) {
    chunk.clear();
    enc.next(chunk, kDataChunk);
    co_await m.write(chunk, deadline);
  }
  Reply final_reply = co_await m.read_reply(deadline, "the message");
  // The transaction is over whatever the answer: no RSET needed.
  if (!is_2xx(final_reply))
    m.refuse(classify(final_reply), "message refused", std::move(final_reply));
  SendResult result;
  result.queue_id = parse_queue_id(final_reply.text);
  result.reply = std::move(final_reply);
  co_return result;
}

net::awaitable<void> Client::reset() {
  Impl& m = *impl_;
  m.check_usable();
  Reply r = co_await m.command("RSET\r\n", "RSET");
  if (!is_2xx(r)) m.refuse(classify(r), "RSET refused", std::move(r));
}

net::awaitable<void> Client::quit() {
  Impl& m = *impl_;
  if (!m.broken_) {
    try {
      const auto deadline = Clock::now() + std::min<std::chrono::milliseconds>(
                                               m.opts_.command_timeout, std::chrono::seconds(5));
      co_await m.write("QUIT\r\n", deadline);
      Reply r = co_await m.read_reply(deadline, "QUIT");
      (void)r;
    } catch (const std::exception&) {
      // Best effort: the connection is going away either way.
    }
  }
  m.broken_ = true;
  try {
    m.transport_->close();
  } catch (const std::exception&) {
  }
}

}  // namespace el::smtp
