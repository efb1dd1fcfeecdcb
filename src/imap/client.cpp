// IMAP client: an engine (tags, deadlines, untagged dispatch over ResponseParser) and the
// commands the listener needs (login, OAuth SASL, LIST, STATUS, APPEND, SELECT, UID SEARCH/FETCH,
// IDLE, NOOP, LOGOUT).
#include "imap/client.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <functional>

#include "imap/encoding.hpp"
#include "imap/parser.hpp"

namespace el::imap {

namespace {

using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr std::size_t kSmallBuffer = 4 * 1024;    // idle sessions: a few KiB each
constexpr std::size_t kLargeBuffer = 64 * 1024;   // while reading a big literal
constexpr std::size_t kKeepCapacity = 16 * 1024;  // buffers above this are freed after use

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && upper(a) == upper(b);
}

// A command on the wire: the first part goes out with the tag; each further part is sent after a
// continuation ("+") from the server (synchronizing literals, AUTHENTICATE responses).
struct Command {
  // Caller bytes spliced into parts[part] at `offset` when written, so that a large APPEND
  // literal is sent from the caller's buffer instead of being copied. Must outlive run().
  struct Borrowed {
    std::size_t part = 0;
    std::size_t offset = 0;
    std::string_view data;
  };

  std::vector<std::string> parts{std::string()};
  std::vector<Borrowed> borrowed;
  bool sensitive = false;  // holds a password or token: wiped after sending
  // SASL: what to send to a server challenge that comes after every part went out (the error
  // challenge of XOAUTH2/OAUTHBEARER); the challenge text is kept in Impl::challenge_. Without
  // it such a continuation is a protocol error.
  std::optional<std::string> challenge_answer;

  Command() = default;
  Command(Command&&) = default;
  Command& operator=(Command&&) = default;

  Command& text(std::string_view s) & {
    parts.back() += s;
    return *this;
  }
  Command&& text(std::string_view s) && {
    parts.back() += s;
    return std::move(*this);
  }
  // An astring: quoted when possible, else a literal ({n+} with LITERAL+, else synchronizing).
  Command& astring(std::string_view s, bool literal_plus) {
    if (!needs_literal(s)) return text(quote(s));
    if (literal_plus) {
      parts.back() += "{" + std::to_string(s.size()) + "+}\r\n";
      parts.back() += s;
    } else {
      parts.back() += "{" + std::to_string(s.size()) + "}\r\n";
      parts.emplace_back(s);
    }
    return *this;
  }
  Command& next_part() {
    parts.back() += "\r\n";
    parts.emplace_back();
    return *this;
  }
  Command& borrow(std::string_view s) {
    borrowed.push_back({parts.size() - 1, parts.back().size(), s});
    return *this;
  }
  ~Command() {
    if (!sensitive) return;
    for (auto& p : parts) OPENSSL_cleanse(p.data(), p.size());
  }
};

// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// RFC 6154 roles, in their canonical spelling.
constexpr std::string_view kSpecialUse[] = {"\\All",  "\\Archive", "\\Drafts", "\\Flagged",
                                            "\\Junk", "\\Sent",    "\\Trash"};

// APPEND literals up to this size are copied into the command (one write); larger ones are sent
// from the caller's buffer.
constexpr std::size_t kInlineLiteral = 16 * 1024;
// LITERAL- (RFC 7888) allows non-synchronizing literals up to this size.
constexpr std::size_t kLiteralMinusMax = 4096;

// A flag for APPEND: "\\Seen" or a keyword; anything that would break out of the flag list is
// refused rather than sent.
bool valid_flag(std::string_view f) {
  if (f.empty()) return false;
  for (std::size_t i = 0; i < f.size(); ++i) {
    auto c = static_cast<unsigned char>(f[i]);
    if (c == '\\' && i == 0) continue;
    if (c <= ' ' || c >= 0x7f) return false;
    if (std::strchr("(){%*\"\\]", c) != nullptr) return false;
  }
  return true;
}

// RFC 5801 saslname for the OAUTHBEARER gs2 header: ',' and '=' escaped.
std::string sasl_name(std::string_view user) {
  std::string out;
  out.reserve(user.size());
  for (char c : user) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out += c;
    }
  }
  return out;
}

// The "status" member of the JSON error a server sends as an XOAUTH2/OAUTHBEARER challenge
// ({"status":"400","schemes":"Bearer",...}); empty when absent. A scan, not a JSON parser: the
// value only decorates an error message, so it is cut short and kept printable.
std::string json_status(std::string_view json) {
  constexpr std::string_view kKey = "\"status\"";
  auto pos = json.find(kKey);
  if (pos == std::string_view::npos) return {};
  pos += kKey.size();
  auto skip_ws = [&] {
    while (pos < json.size() &&
           (json[pos] == ' ' || json[pos] == '\t' || json[pos] == '\r' || json[pos] == '\n'))
      ++pos;
  };
  skip_ws();
  if (pos >= json.size() || json[pos] != ':') return {};
  ++pos;
  skip_ws();
  if (pos >= json.size()) return {};
  std::string out;
  const bool quoted = json[pos] == '"';
  if (quoted) ++pos;
  for (; pos < json.size() && out.size() < 64; ++pos) {
    char c = json[pos];
    if (quoted && c == '\\') {
      if (++pos >= json.size()) break;
      c = json[pos];
    } else if (quoted && c == '"') {
      break;
    } else if (!quoted && (c == ',' || c == '}' || c == ' ')) {
      break;
    }
    if (c > ' ' && c < 0x7f) out += c;
  }
  return out;
}

}  // namespace

// ---- Engine ------------------------------------------------------------------------------------

struct Client::Impl {
  enum class Wake { response, deadline, interrupt };
  using Untagged = std::function<void(const Response&)>;

  Impl(Client& self, std::unique_ptr<Transport> t, ClientOptions o)
      : self_(self),
        transport_(std::move(t)),
        opts_(o),
        parser_(ParserLimits{.max_literal = o.max_literal}),
        deadline_(*transport_) {}

  // -- deadlines: the transport is cancelled when one passes (TransportDeadline).
  void arm(Clock::time_point when) { deadline_.arm(when); }
  void disarm() { deadline_.disarm(); }

  [[noreturn]] void fail(ErrorKind kind, std::string msg) {
    if (kind != ErrorKind::no && kind != ErrorKind::bad && kind != ErrorKind::auth) {
      broken_ = true;
    }
    throw Error(kind, std::move(msg));
  }

  void check_usable() {
    if (broken_) throw Error(ErrorKind::io, "IMAP connection is broken; reconnect");
  }

  Clock::time_point command_deadline() const { return Clock::now() + opts_.command_timeout; }

  net::awaitable<void> write(std::string_view data, Clock::time_point deadline) {
    arm(deadline);
    try {
      co_await transport_->write_all(data);
    } catch (const Error& e) {
      disarm();
      if (deadline_.fired()) fail(ErrorKind::timeout, "IMAP write timed out");
      fail(e.kind() == ErrorKind::timeout ? ErrorKind::timeout : ErrorKind::io, e.what());
    }
    disarm();
  }

  // Reads bytes until the parser yields one complete response into resp_.
  net::awaitable<void> read_response() {
    resp_.shrink(kKeepCapacity);
    while (true) {
      if (rpos_ < rend_) {
        std::size_t used = 0;
        auto r = parser_.parse(std::string_view(rbuf_.get() + rpos_, rend_ - rpos_), used, resp_);
        rpos_ += used;
        if (r == ResponseParser::Result::done) co_return;
        if (r == ResponseParser::Result::error) {
          fail(ErrorKind::protocol, "malformed IMAP response: " + parser_.error());
        }
      }
      rpos_ = rend_ = 0;
      // interrupt() may land while a response is half read; do not wait for the rest.
      if (waiting_in_idle_ && interrupt_requested_) throw Error(ErrorKind::io, "interrupted");
      parser_.shrink(kKeepCapacity);
      // Big literals are read in big chunks; then the buffer drops back to its idle size.
      std::size_t want = parser_.literal_remaining() > kSmallBuffer ? kLargeBuffer : kSmallBuffer;
      if (rbuf_size_ != want) {
        rbuf_.reset();
        rbuf_ = std::make_unique<char[]>(want);
        rbuf_size_ = want;
      }
      rend_ = co_await transport_->read_some(net::buffer(rbuf_.get(), rbuf_size_));
    }
  }

  // One response under a deadline. Wake::interrupt only when `interruptible` (IDLE).
  net::awaitable<Wake> read_one(Clock::time_point deadline, bool interruptible) {
    arm(deadline);
    if (interruptible) waiting_in_idle_ = true;
    std::optional<Error> err;
    try {
      co_await read_response();
    } catch (const Error& e) {
      err = e;
    }
    waiting_in_idle_ = false;
    disarm();
    if (!err) {
      dispatch();
      co_return Wake::response;
    }
    if (err->kind() == ErrorKind::protocol) throw *err;
    if (deadline_.fired()) co_return Wake::deadline;
    if (interruptible && interrupt_requested_) co_return Wake::interrupt;
    fail(err->kind() == ErrorKind::timeout ? ErrorKind::timeout : ErrorKind::io, err->what());
  }

  // Reads one response before `deadline` or fails with Error{timeout}.
  net::awaitable<void> read_or_timeout(Clock::time_point deadline, const char* what) {
    // (Not inside the if: GCC 12 miscompiles some co_await expressions in conditions.)
    Wake w = co_await read_one(deadline, false);
    if (w == Wake::deadline) {
      fail(ErrorKind::timeout, std::string("IMAP server did not answer ") + what + " in time");
    }
  }

  // State every untagged response may change, whatever command is running.
  void dispatch() {
    const Response& r = resp_;
    if (r.kind() == ResponseKind::continuation) return;
    if (r.code_is("CAPABILITY")) set_caps(r.code_args());
    if (r.kind() == ResponseKind::tagged) return;
    if (r.status() == Status::bye) {
      bye_ = true;
      if (!logging_out_) fail(ErrorKind::bye, "IMAP server said BYE: " + std::string(r.text()));
      return;
    }
    if (r.has_number()) {
      if (r.name_is("EXISTS")) {
        self_.exists_ = r.number();
      } else if (r.name_is("EXPUNGE")) {
        if (self_.exists_ > 0) --self_.exists_;
        expunged_ = true;
      } else if (r.name_is("RECENT")) {
        if (r.number() > 0) recent_ = true;
      }
    } else if (r.name_is("CAPABILITY")) {
      set_caps(r.data());
    } else if (r.name_is("STATUS") && !r.data().empty()) {
      // Unsolicited under NOTIFY (RFC 5465): another folder changed. Bounded: a name once.
      Value mailbox = r.data()[0];
      if (mailbox.is_string() && notified_.size() < 1000) {
        auto name = decode_mutf7(mailbox.text());
        std::string n = name ? *name : std::string(mailbox.text());
        if (std::find(notified_.begin(), notified_.end(), n) == notified_.end())
          notified_.push_back(std::move(n));
      }
    }
  }

  void set_caps(const ValueRange& values) {
    self_.caps_.clear();
    for (Value v : values) {
      if (v.is_string()) self_.caps_.insert(upper(v.text()));
    }
    caps_seen_ = true;
  }

  // One part of a command, with the caller's borrowed bytes spliced in.
  net::awaitable<void> write_part(const Command& cmd, std::size_t i, Clock::time_point deadline) {
    std::string_view part = cmd.parts[i];
    std::size_t pos = 0;
    for (const auto& b : cmd.borrowed) {
      if (b.part != i) continue;
      if (b.offset > pos) co_await write(part.substr(pos, b.offset - pos), deadline);
      if (!b.data.empty()) co_await write(b.data, deadline);
      pos = b.offset;
    }
    if (pos < part.size()) co_await write(part.substr(pos), deadline);
  }

  // Sends a command and reads until its tagged response; untagged ones go to on_untagged after
  // the common dispatch. Tagged NO -> Error{no_kind}, BAD -> Error{bad}. The tagged response is
  // left in resp_ (APPENDUID).
  net::awaitable<void> run(Command cmd, const Untagged& on_untagged = {},
                           ErrorKind no_kind = ErrorKind::no,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    check_usable();
    challenge_.clear();
    std::string tag = "A" + std::to_string(++tag_seq_);
    auto deadline = Clock::now() + (timeout.count() > 0 ? timeout : opts_.command_timeout);
    std::string verb = cmd.parts.front().substr(0, cmd.parts.front().find_first_of(" \r"));
    cmd.parts.front().insert(0, tag + " ");
    for (auto& b : cmd.borrowed) {
      if (b.part == 0) b.offset += tag.size() + 1;
    }
    cmd.parts.back() += "\r\n";
    std::size_t next = 0;
    bool challenged = false;
    co_await write_part(cmd, next++, deadline);
    while (true) {
      co_await read_or_timeout(deadline, verb.c_str());
      const Response& r = resp_;
      if (r.kind() == ResponseKind::continuation) {
        if (next < cmd.parts.size()) {
          co_await write_part(cmd, next++, deadline);
          continue;
        }
        if (!cmd.challenge_answer || challenged) {
          fail(ErrorKind::protocol, "unexpected continuation during " + verb);
        }
        challenged = true;
        challenge_.assign(r.text().substr(0, 4096));
        std::string answer = *cmd.challenge_answer + "\r\n";
        co_await write(answer, deadline);
        continue;
      }
      if (r.kind() == ResponseKind::untagged) {
        if (on_untagged) on_untagged(r);
        continue;
      }
      if (r.tag() != tag) fail(ErrorKind::protocol, "unexpected tag " + std::string(r.tag()));
      if (r.status() == Status::ok) co_return;
      std::string msg = verb + " failed: " + std::string(r.name());
      if (!r.code().empty()) {  // e.g. [TRYCREATE], [AUTHENTICATIONFAILED]: callers act on them
        msg += " [" + std::string(r.code());
        if (!r.code_text().empty()) msg += " " + std::string(r.code_text());
        msg += "]";
      }
      msg += " " + std::string(r.text());
      if (r.status() == Status::no) fail(no_kind, msg);
      fail(ErrorKind::bad, msg);
    }
  }

  // AUTHENTICATE <mechanism> with an initial response (SASL-IR when offered, else after the
  // first "+"). A refusal challenge gets `abort_answer`; its JSON "status" goes into the error.
  // `initial` (it holds the token) is wiped.
  net::awaitable<void> authenticate(std::string_view mechanism, std::string& initial,
                                    std::string_view abort_answer) {
    check_usable();
    if (!self_.has_capability("AUTH=" + std::string(mechanism))) {
      OPENSSL_cleanse(initial.data(), initial.size());
      fail(ErrorKind::auth, "server does not offer AUTH=" + std::string(mechanism));
    }
    caps_seen_ = false;
    Command cmd;
    cmd.sensitive = true;
    cmd.challenge_answer = std::string(abort_answer);
    std::string b64 = base64_encode(initial);
    OPENSSL_cleanse(initial.data(), initial.size());
    cmd.text("AUTHENTICATE ").text(mechanism);
    if (self_.has_capability("SASL-IR")) {
      cmd.text(" ");
    } else {
      cmd.next_part();
    }
    // Room for the tag and CRLF too: a reallocation would leave a copy of the token behind.
    cmd.parts.back().reserve(cmd.parts.back().size() + b64.size() + 64);
    cmd.text(b64);
    OPENSSL_cleanse(b64.data(), b64.size());
    std::optional<Error> refused;
    const Untagged none;
    try {
      co_await run(std::move(cmd), none, ErrorKind::auth);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::auth) throw;
      refused = e;
    }
    if (refused) {
      std::string msg = refused->what();
      auto json = base64_decode(challenge_);
      std::string status = json ? json_status(*json) : std::string();
      if (!status.empty()) msg += " (server status " + status + ")";
      fail(ErrorKind::auth, msg);
    }
    // Capabilities change after login; Dovecot sends them in the OK, others need asking.
    if (!caps_seen_) co_await capability();
  }

  net::awaitable<void> capability() {
    caps_seen_ = false;
    Command cmd;
    cmd.text("CAPABILITY");
    co_await run(std::move(cmd));
    if (!caps_seen_) fail(ErrorKind::protocol, "server sent no CAPABILITY");
  }

  Client& self_;
  std::unique_ptr<Transport> transport_;
  ClientOptions opts_;
  ResponseParser parser_;
  Response resp_;
  std::unique_ptr<char[]> rbuf_;
  std::size_t rbuf_size_ = 0, rpos_ = 0, rend_ = 0;
  TransportDeadline deadline_;  // after transport_: it watches it
  std::uint64_t tag_seq_ = 0;
  std::string challenge_;  // the last SASL challenge answered with challenge_answer (base64)
  std::uint32_t exists_baseline_ = 0;
  bool broken_ = false;
  bool bye_ = false;
  bool logging_out_ = false;
  bool caps_seen_ = false;
  bool preauth_ = false;
  bool recent_ = false;
  bool expunged_ = false;
  std::vector<std::string> notified_;  // folders named by unsolicited STATUS (NOTIFY)
  bool waiting_in_idle_ = false;
  bool interrupt_requested_ = false;
};

// ---- Client ------------------------------------------------------------------------------------

Client::Client(std::unique_ptr<Transport> transport, ClientOptions opts)
    : impl_(std::make_unique<Impl>(*this, std::move(transport), opts)) {}

Client::~Client() = default;

bool Client::has_capability(std::string_view cap) const { return caps_.count(upper(cap)) > 0; }

net::awaitable<void> Client::start(bool starttls) {
  Impl& m = *impl_;
  m.check_usable();
  co_await m.read_or_timeout(m.command_deadline(), "with a greeting");
  const Response& g = m.resp_;
  if (g.kind() != ResponseKind::untagged) m.fail(ErrorKind::protocol, "malformed greeting");
  if (g.status() == Status::preauth) {
    m.preauth_ = true;
  } else if (g.status() != Status::ok) {
    m.fail(ErrorKind::protocol, "unexpected greeting: " + std::string(g.raw().substr(0, 200)));
  }
  if (starttls) {
    if (!m.caps_seen_) co_await m.capability();
    if (!has_capability("STARTTLS")) m.fail(ErrorKind::tls, "server does not offer STARTTLS");
    co_await m.run(Command().text("STARTTLS"), {}, ErrorKind::tls);
    // Bytes after the OK were sent in clear text before TLS: a man in the middle could inject
    // them (CVE-2011-0411 style), so refuse.
    if (m.rpos_ != m.rend_ || !m.parser_.idle()) {
      m.fail(ErrorKind::protocol, "data after STARTTLS response");
    }
    m.arm(m.command_deadline());
    std::optional<Error> err;
    try {
      co_await m.transport_->start_tls();
    } catch (const Error& e) {
      err = e;
    }
    m.disarm();
    if (err) {
      if (m.deadline_.fired()) m.fail(ErrorKind::timeout, "STARTTLS handshake timed out");
      m.fail(err->kind(), err->what());
    }
    caps_.clear();
    m.caps_seen_ = false;
  }
  if (!m.caps_seen_) co_await m.capability();
}

net::awaitable<void> Client::login(std::string_view user, const core::Secret& password) {
  Impl& m = *impl_;
  m.check_usable();
  if (m.preauth_) co_return;
  m.caps_seen_ = false;
  Command cmd;
  cmd.sensitive = true;
  if (has_capability("AUTH=PLAIN")) {
    std::string plain;
    plain.reserve(user.size() + password.reveal().size() + 2);
    plain += '\0';
    plain += user;
    plain += '\0';
    plain += password.reveal();
    std::string b64 = base64_encode(plain);
    OPENSSL_cleanse(plain.data(), plain.size());
    cmd.text("AUTHENTICATE PLAIN");
    if (has_capability("SASL-IR")) {
      cmd.text(" ").text(b64);
    } else {
      cmd.next_part().text(b64);
    }
    OPENSSL_cleanse(b64.data(), b64.size());
  } else {
    if (has_capability("LOGINDISABLED")) {
      m.fail(ErrorKind::auth, "server disabled LOGIN and offers no AUTH=PLAIN");
    }
    bool lp = has_capability("LITERAL+");
    cmd.text("LOGIN ").astring(user, lp).text(" ").astring(password.reveal(), lp);
  }
  co_await m.run(std::move(cmd), {}, ErrorKind::auth);
  // Capabilities change after login; Dovecot sends them in the OK, others need asking.
  if (!m.caps_seen_) co_await m.capability();
}

net::awaitable<void> Client::login_xoauth2(std::string_view user,
                                           const core::Secret& access_token) {
  Impl& m = *impl_;
  m.check_usable();
  if (m.preauth_) co_return;
  const std::string& token = access_token.reveal();
  std::string initial;
  initial.reserve(user.size() + token.size() + 20);
  initial += "user=";
  initial += user;
  initial += '\x01';
  initial += "auth=Bearer ";
  initial += token;
  initial += "\x01\x01";
  // The refusal challenge is answered with an empty response (Google's documented flow).
  co_await m.authenticate("XOAUTH2", initial, "");
}

net::awaitable<void> Client::login_oauthbearer(std::string_view user, std::string_view host,
                                               std::uint16_t port,
                                               const core::Secret& access_token) {
  Impl& m = *impl_;
  m.check_usable();
  if (m.preauth_) co_return;
  const std::string& token = access_token.reveal();
  std::string initial;
  initial.reserve(user.size() + host.size() + token.size() + 40);
  initial += "n,a=";
  initial += sasl_name(user);
  initial += ',';
  initial += '\x01';
  initial += "host=";
  initial += host;
  initial += '\x01';
  initial += "port=";
  initial += std::to_string(port);
  initial += '\x01';
  initial += "auth=Bearer ";
  initial += token;
  initial += "\x01\x01";
  // RFC 7628 §3.2.3: the client answers the error challenge with a single ^A ("AQ==").
  co_await m.authenticate("OAUTHBEARER", initial, "AQ==");
}

net::awaitable<void> Client::id(const std::vector<std::pair<std::string, std::string>>& fields) {
  Impl& m = *impl_;
  m.check_usable();
  if (!has_capability("ID")) co_return;
  Command cmd;
  cmd.text("ID ");
  if (fields.empty()) {
    cmd.text("NIL");
  } else {
    cmd.text("(");
    bool first = true;
    for (const auto& [k, v] : fields) {
      // Short quoted strings only (a literal is not worth the round trip): drop the rest.
      if (needs_literal(k) || needs_literal(v)) continue;
      if (!first) cmd.text(" ");
      first = false;
      cmd.text(quote(k)).text(" ").text(quote(v));
    }
    cmd.text(")");
  }
  try {
    co_await m.run(std::move(cmd));
  } catch (const Error& e) {
    // ID is informational: a server that dislikes it should not cost us the session.
    if (e.kind() != ErrorKind::no && e.kind() != ErrorKind::bad) throw;
  }
}

net::awaitable<SelectInfo> Client::select(std::string_view folder, bool read_only) {
  Impl& m = *impl_;
  m.check_usable();
  auto name = encode_mutf7(folder);
  if (!name) throw Error(ErrorKind::bad, "folder name is not valid UTF-8");
  SelectInfo info;
  exists_ = 0;
  Command cmd;
  cmd.text(read_only ? "EXAMINE " : "SELECT ").astring(*name, has_capability("LITERAL+"));
  auto on_untagged = [&info](const Response& r) {
    if (r.status() != Status::ok) return;
    auto args = r.code_args();
    if (args.size() < 1 || !args[0].is_number()) return;
    if (r.code_is("UIDVALIDITY")) info.uidvalidity = static_cast<std::uint32_t>(args[0].number());
    if (r.code_is("UIDNEXT")) info.uidnext = static_cast<std::uint32_t>(args[0].number());
  };
  co_await m.run(std::move(cmd), on_untagged);
  info.exists = exists_;
  m.exists_baseline_ = exists_;
  co_return info;
}

bool FolderInfo::selectable() const {
  return std::none_of(attributes.begin(), attributes.end(), [](const std::string& a) {
    return iequals(a, "\\Noselect") || iequals(a, "\\NonExistent");
  });
}

net::awaitable<std::vector<FolderInfo>> Client::list_folders() {
  Impl& m = *impl_;
  m.check_usable();
  std::vector<FolderInfo> out;
  Impl::Untagged on_untagged = [&out](const Response& r) {
    // mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
    //                [SP mbox-list-extended]
    if (r.has_number() || !r.name_is("LIST") || r.data().size() < 3) return;
    auto data = r.data();
    auto it = data.begin();
    Value attrs = *it;
    Value delim = *++it;
    Value name = *++it;
    if (!attrs.is_list() || !name.is_string() || delim.is_list()) return;
    FolderInfo f;
    for (Value a : attrs) {
      if (!a.is_string()) continue;
      f.attributes.emplace_back(a.text());
      if (!f.special_use.empty()) continue;
      for (std::string_view role : kSpecialUse) {
        if (iequals(a.text(), role)) f.special_use = std::string(role);
      }
    }
    f.delimiter = std::string(delim.text());  // empty for NIL
    // A name that is not valid modified UTF-7 (a server sending raw UTF-8) is kept as sent.
    auto decoded = decode_mutf7(name.text());
    f.name = decoded ? std::move(*decoded) : std::string(name.text());
    if (iequals(f.name, "INBOX")) f.name = "INBOX";
    out.push_back(std::move(f));
  };
  Command cmd;
  cmd.text("LIST \"\" \"*\"");
  if (has_capability("SPECIAL-USE") && has_capability("LIST-EXTENDED")) {
    cmd.text(" RETURN (SPECIAL-USE)");
  }
  co_await m.run(std::move(cmd), on_untagged);
  co_return out;
}

net::awaitable<void> Client::notify_set(const std::vector<std::string>& folders) {
  Impl& m = *impl_;
  m.check_usable();
  if (!has_capability("NOTIFY")) throw Error(ErrorKind::no, "server does not offer NOTIFY");
  Command cmd;
  cmd.text("NOTIFY SET (mailboxes (");
  bool first = true;
  for (const auto& f : folders) {
    auto name = encode_mutf7(f);
    if (!name) throw Error(ErrorKind::bad, "folder name is not valid UTF-8");
    if (!first) cmd.text(" ");
    first = false;
    cmd.astring(*name, has_capability("LITERAL+"));
  }
  cmd.text(") (MessageNew MessageExpunge))");
  co_await m.run(std::move(cmd));
}

std::vector<std::string> Client::take_notified() {
  std::vector<std::string> out;
  out.swap(impl_->notified_);
  return out;
}

net::awaitable<StatusInfo> Client::status(std::string_view folder) {
  Impl& m = *impl_;
  m.check_usable();
  auto name = encode_mutf7(folder);
  if (!name) throw Error(ErrorKind::bad, "folder name is not valid UTF-8");
  StatusInfo info;
  bool matched = false;
  const std::string& wire_name = *name;
  Impl::Untagged on_untagged = [&info, &matched, &wire_name](const Response& r) {
    if (r.has_number() || !r.name_is("STATUS") || r.data().size() != 2) return;
    Value mailbox = r.data()[0];
    Value items = r.data()[1];
    if (!mailbox.is_string() || !items.is_list()) return;
    // NOTIFY may report other folders; keep the first answer for ours.
    const bool ours = mailbox.text() == wire_name ||
                      (iequals(wire_name, "INBOX") && iequals(mailbox.text(), "INBOX"));
    if (!ours || matched) return;
    matched = true;
    for (auto i = items.begin(); i != items.end(); ++i) {
      Value key = *i;
      if (++i == items.end()) break;
      Value val = *i;
      if (!val.is_number()) continue;
      auto n = static_cast<std::uint32_t>(val.number());
      if (iequals(key.text(), "MESSAGES")) info.messages = n;
      if (iequals(key.text(), "UIDNEXT")) info.uidnext = n;
      if (iequals(key.text(), "UIDVALIDITY")) info.uidvalidity = n;
      if (iequals(key.text(), "UNSEEN")) info.unseen = n;
    }
  };
  Command cmd;
  cmd.text("STATUS ")
      .astring(*name, has_capability("LITERAL+"))
      .text(" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)");
  co_await m.run(std::move(cmd), on_untagged);
  // Our own answer is not a notification.
  std::erase_if(m.notified_, [&](const std::string& n) {
    return n == folder || (iequals(n, "INBOX") && iequals(folder, "INBOX"));
  });
  co_return info;
}

net::awaitable<AppendResult> Client::append(std::string_view folder,
                                            const std::vector<std::string>& flags,
                                            std::string_view message) {
  Impl& m = *impl_;
  m.check_usable();
  auto name = encode_mutf7(folder);
  if (!name) throw Error(ErrorKind::bad, "folder name is not valid UTF-8");
  Command cmd;
  cmd.text("APPEND ").astring(*name, has_capability("LITERAL+")).text(" (");
  for (std::size_t i = 0; i < flags.size(); ++i) {
    if (!valid_flag(flags[i])) throw Error(ErrorKind::bad, "invalid flag for APPEND");
    if (i > 0) cmd.text(" ");
    cmd.text(flags[i]);
  }
  cmd.text(") {").text(std::to_string(message.size()));
  const bool non_sync = has_capability("LITERAL+") ||
                        (has_capability("LITERAL-") && message.size() <= kLiteralMinusMax);
  if (non_sync) {
    cmd.text("+}\r\n");
  } else {
    cmd.text("}").next_part();  // the message goes after the server's "+"
  }
  if (message.size() <= kInlineLiteral) {
    cmd.text(message);
  } else {
    cmd.borrow(message);
  }
  co_await m.run(std::move(cmd));
  AppendResult result;
  const Response& ok = m.resp_;
  if (ok.code_is("APPENDUID")) {
    auto args = ok.code_args();
    // A uid-set (MULTIAPPEND) is not a single uid: leave the result at 0.
    if (args.size() == 2 && args[0].is_number() && args[1].is_number()) {
      result.uidvalidity = static_cast<std::uint32_t>(args[0].number());
      result.uid = static_cast<std::uint32_t>(args[1].number());
    }
  }
  co_return result;
}

net::awaitable<std::vector<std::uint32_t>> Client::uid_search(std::string_view criteria) {
  Impl& m = *impl_;
  std::vector<std::uint32_t> uids;
  auto on_untagged = [&uids](const Response& r) {
    if (!r.name_is("SEARCH") || r.has_number()) return;
    for (Value v : r.data()) {
      if (v.is_number()) uids.push_back(static_cast<std::uint32_t>(v.number()));
    }
  };
  co_await m.run(Command().text("UID SEARCH ").text(criteria), on_untagged);
  co_return uids;
}

net::awaitable<std::vector<FetchedMessage>> Client::uid_fetch(std::string_view uid_set,
                                                              FetchBody what) {
  Impl& m = *impl_;
  std::vector<FetchedMessage> out;
  const std::string_view body_item = what == FetchBody::full ? "BODY[]" : "BODY[HEADER]";
  auto on_untagged = [&out, what, body_item](const Response& r) {
    if (!r.has_number() || !r.name_is("FETCH") || r.data().size() != 1) return;
    Value items = r.data()[0];
    if (!items.is_list()) return;
    FetchedMessage msg;
    bool has_uid = false, has_body = false, has_size = false;
    for (auto it = items.begin(); it != items.end(); ++it) {
      Value name = *it;
      if (++it == items.end()) break;
      Value val = *it;
      std::string_view n = name.text();
      if (iequals(n, "UID") && val.is_number()) {
        msg.uid = static_cast<std::uint32_t>(val.number());
        has_uid = true;
      } else if (iequals(n, "FLAGS") && val.is_list()) {
        for (Value f : val) msg.flags.emplace_back(f.text());
      } else if (iequals(n, "INTERNALDATE")) {
        msg.internal_date = std::string(val.text());
      } else if (iequals(n, "RFC822.SIZE") && val.is_number()) {
        msg.size = val.number();
        has_size = true;
      } else if (what != FetchBody::none && iequals(n, body_item)) {
        msg.body = std::string(val.text());  // NIL: the message vanished; an empty body
        has_body = true;
      }
    }
    // FETCH responses without UID and the asked data are flag updates from other sessions.
    const bool complete = what == FetchBody::none ? has_size : has_body;
    if (has_uid && complete) out.push_back(std::move(msg));
  };
  const char* items = what == FetchBody::full ? " (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"
                      : what == FetchBody::header
                          ? " (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"
                          : " (UID INTERNALDATE RFC822.SIZE)";
  co_await m.run(Command().text("UID FETCH ").text(uid_set).text(items), on_untagged);
  co_return out;
}

net::awaitable<IdleResult> Client::idle(std::chrono::steady_clock::duration max_duration) {
  Impl& m = *impl_;
  m.check_usable();
  IdleResult result;
  if (m.interrupt_requested_) {  // interrupt() came before we started: honour it
    m.interrupt_requested_ = false;
    result.interrupted = true;
    result.exists = exists_;
    co_return result;
  }
  if (!has_capability("IDLE")) {
    throw Error(ErrorKind::no, "server does not support IDLE; poll with noop()");
  }
  const auto now = Clock::now();
  const auto idle_end = max_duration >= Clock::time_point::max() - now ? Clock::time_point::max()
                                                                       : now + max_duration;
  const std::string tag = "A" + std::to_string(++m.tag_seq_);
  const std::uint32_t baseline = m.exists_baseline_;
  m.recent_ = false;
  m.expunged_ = false;
  auto deadline = m.command_deadline();
  co_await m.write(tag + " IDLE\r\n", deadline);

  auto check_tagged = [&](const Response& r) {
    if (r.tag() != tag) m.fail(ErrorKind::protocol, "unexpected tag " + std::string(r.tag()));
    if (r.status() == Status::no) m.fail(ErrorKind::no, "IDLE failed: " + std::string(r.text()));
    if (r.status() == Status::bad) m.fail(ErrorKind::bad, "IDLE failed: " + std::string(r.text()));
  };
  // Until "+ idling". A tagged answer here means the server refused (or ended) IDLE at once.
  while (true) {
    co_await m.read_or_timeout(deadline, "IDLE");
    if (m.resp_.kind() == ResponseKind::continuation) break;
    if (m.resp_.kind() == ResponseKind::tagged) {
      check_tagged(m.resp_);
      result.new_mail = exists_ > baseline || m.recent_;
      result.expunged = m.expunged_;
      result.exists = exists_;
      m.exists_baseline_ = exists_;
      co_return result;
    }
  }

  bool server_ended = false;
  while (true) {
    if (exists_ > baseline || m.recent_ || m.expunged_ || !m.notified_.empty()) break;
    if (m.interrupt_requested_) {
      result.interrupted = true;
      break;
    }
    auto wake = co_await m.read_one(idle_end, true);
    if (wake == Impl::Wake::deadline) break;
    if (wake == Impl::Wake::interrupt) continue;  // the flag is handled at the top
    if (m.resp_.kind() == ResponseKind::tagged) {
      check_tagged(m.resp_);
      server_ended = true;
      break;
    }
  }

  if (!server_ended) {
    auto done_deadline = Clock::now() + m.opts_.done_timeout;
    co_await m.write("DONE\r\n", done_deadline);
    while (true) {
      co_await m.read_or_timeout(done_deadline, "DONE");
      if (m.resp_.kind() == ResponseKind::tagged) {
        check_tagged(m.resp_);
        break;
      }
    }
  }
  m.interrupt_requested_ = false;
  result.new_mail = exists_ > baseline || m.recent_;
  result.expunged = m.expunged_;
  result.exists = exists_;
  result.notified.swap(m.notified_);
  m.exists_baseline_ = exists_;
  co_return result;
}

void Client::interrupt() {
  impl_->interrupt_requested_ = true;
  // Wake the pending read; read_one() tells this apart from an error by the flag.
  if (impl_->waiting_in_idle_) impl_->transport_->cancel();
}

net::awaitable<bool> Client::noop() {
  Impl& m = *impl_;
  co_await m.run(Command().text("NOOP"));
  bool grew = exists_ > m.exists_baseline_;
  m.exists_baseline_ = exists_;
  co_return grew;
}

net::awaitable<void> Client::logout() {
  Impl& m = *impl_;
  if (!m.broken_) {
    m.logging_out_ = true;
    try {
      co_await m.run(
          Command().text("LOGOUT"), {}, ErrorKind::no,
          std::min<std::chrono::milliseconds>(m.opts_.command_timeout, std::chrono::seconds(5)));
    } catch (const std::exception&) {
      // Best effort: the connection is going away either way.
    }
  }
  m.broken_ = true;
  m.transport_->close();
}

// ---- Dates -------------------------------------------------------------------------------------

std::optional<std::chrono::system_clock::time_point> parse_internal_date(std::string_view s) {
  // date-day-fixed "-" date-month "-" date-year SP time SP zone: " 7-Jul-1996 02:44:25 -0700"
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  auto num = [&](std::size_t& i, std::size_t min_digits, std::size_t max_digits, int& out) {
    std::size_t start = i;
    out = 0;
    while (i < s.size() && i - start < max_digits && s[i] >= '0' && s[i] <= '9') {
      out = out * 10 + (s[i++] - '0');
    }
    return i - start >= min_digits;
  };
  std::size_t i = 0;
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0, zone = 0;
  if (!num(i, 1, 2, day) || i >= s.size() || s[i++] != '-') return std::nullopt;
  if (i + 4 > s.size() || s[i + 3] != '-') return std::nullopt;
  int month = -1;
  for (int k = 0; k < 12; ++k) {
    if (iequals(s.substr(i, 3), kMonths[k])) month = k + 1;
  }
  if (month < 0) return std::nullopt;
  i += 4;
  if (!num(i, 4, 4, year) || i >= s.size() || s[i++] != ' ') return std::nullopt;
  if (!num(i, 2, 2, hh) || i >= s.size() || s[i++] != ':') return std::nullopt;
  if (!num(i, 2, 2, mm) || i >= s.size() || s[i++] != ':') return std::nullopt;
  if (!num(i, 2, 2, ss) || i >= s.size() || s[i++] != ' ') return std::nullopt;
  if (i >= s.size() || (s[i] != '+' && s[i] != '-')) return std::nullopt;
  int sign = s[i++] == '-' ? -1 : 1;
  if (!num(i, 4, 4, zone) || i != s.size()) return std::nullopt;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (day < 1 || day > kDays[month - 1] || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  if (zone % 100 > 59) return std::nullopt;
  std::int64_t secs =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
      hh * 3600 + mm * 60 + ss;
  secs -= sign * ((zone / 100) * 3600 + (zone % 100) * 60);
  return std::chrono::system_clock::time_point(std::chrono::seconds(secs));
}

std::string format_search_date(std::chrono::system_clock::time_point t) {
  auto days = std::chrono::floor<std::chrono::days>(t);
  std::chrono::year_month_day ymd(days);
  return std::to_string(static_cast<unsigned>(ymd.day())) + "-" +
         kMonths[static_cast<unsigned>(ymd.month()) - 1] + "-" +
         std::to_string(static_cast<int>(ymd.year()));
}

}  // namespace el::imap
