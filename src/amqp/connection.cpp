// rabbitmq-c behind a small C++ surface: RAII for the connection state, one place that turns the
// library's status codes and RPC replies into Error, and copies of everything a frame points to
// (the library reuses its buffers on the next call).
// GCC 12 at -O2 reports a false -Wmaybe-uninitialized when a std::variant holding strings is
// moved into std::optional (a known GCC 12 false positive); every alternative here is fully
// initialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "amqp/connection.hpp"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <algorithm>

namespace el::amqp {

namespace {

constexpr amqp_channel_t kChannel = 1;
constexpr int kFrameMax = 131072;

amqp_bytes_t bytes(std::string_view s) {
  // rabbitmq-c takes non-const pointers but only reads through them when sending.
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());
  return b;
}

std::string str(const amqp_bytes_t& b) {
  return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

timeval to_timeval(std::chrono::milliseconds d) {
  d = std::max(d, std::chrono::milliseconds(0));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

// The one translation of the library's failures into ours.
std::string describe(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
        return "connection closed by the broker: " + std::to_string(m->reply_code) + " " +
               str(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
        return "channel closed by the broker: " + std::to_string(m->reply_code) + " " +
               str(m->reply_text);
      }
      return std::string("unexpected ") + amqp_method_name(r.reply.id);
  }
  return "unknown reply";
}

void check(const amqp_rpc_reply_t& r, std::string_view what) {
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw Error(std::string(what) + ": " + describe(r));
}

void check_status(int status, std::string_view what) {
  if (status != AMQP_STATUS_OK) {
    throw Error(std::string(what) + ": " + amqp_error_string2(status));
  }
}

// A Table encoded for one call: the entries point into the Table, which must outlive it.
class EncodedTable {
 public:
  explicit EncodedTable(const Table& t) {
    entries_.reserve(t.size());
    for (const auto& [key, value] : t) {
      amqp_table_entry_t e{};
      e.key = bytes(key);
      if (const auto* s = std::get_if<std::string>(&value)) {
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = bytes(*s);
      } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
        e.value.kind = AMQP_FIELD_KIND_I64;
        e.value.value.i64 = *i;
      } else {
        e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
        e.value.value.boolean = std::get<bool>(value) ? 1 : 0;
      }
      entries_.push_back(e);
    }
  }
  amqp_table_t table() {
    amqp_table_t t;
    t.num_entries = static_cast<int>(entries_.size());
    t.entries = entries_.empty() ? nullptr : entries_.data();
    return t;
  }

 private:
  std::vector<amqp_table_entry_t> entries_;
};

Table decode_table(const amqp_table_t& t) {
  Table out;
  for (int i = 0; i < t.num_entries; ++i) {
    const auto& e = t.entries[i];
    const auto& v = e.value.value;
    std::optional<FieldValue> fv;
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        fv = str(v.bytes);
        break;
      case AMQP_FIELD_KIND_BOOLEAN:
        fv = v.boolean != 0;
        break;
      case AMQP_FIELD_KIND_I8:
        fv = std::int64_t{v.i8};
        break;
      case AMQP_FIELD_KIND_U8:
        fv = std::int64_t{v.u8};
        break;
      case AMQP_FIELD_KIND_I16:
        fv = std::int64_t{v.i16};
        break;
      case AMQP_FIELD_KIND_U16:
        fv = std::int64_t{v.u16};
        break;
      case AMQP_FIELD_KIND_I32:
        fv = std::int64_t{v.i32};
        break;
      case AMQP_FIELD_KIND_U32:
        fv = std::int64_t{v.u32};
        break;
      case AMQP_FIELD_KIND_I64:
        fv = std::int64_t{v.i64};
        break;
      case AMQP_FIELD_KIND_U64:
        fv = static_cast<std::int64_t>(v.u64);
        break;
      default:
        break;  // see Table: other types are not ours
    }
    if (fv) out.emplace_back(str(e.key), std::move(*fv));
  }
  return out;
}

// The properties of one publish: the byte views point into `p`, which must outlive them.
struct EncodedProperties {
  explicit EncodedProperties(const Properties& p) : headers(p.headers) {
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = p.persistent ? 2 : 1;
    auto add = [&](const std::string& v, amqp_flags_t flag, amqp_bytes_t& field) {
      if (v.empty()) return;
      props._flags |= flag;
      field = bytes(v);
    };
    add(p.content_type, AMQP_BASIC_CONTENT_TYPE_FLAG, props.content_type);
    add(p.message_id, AMQP_BASIC_MESSAGE_ID_FLAG, props.message_id);
    add(p.correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG, props.correlation_id);
    add(p.reply_to, AMQP_BASIC_REPLY_TO_FLAG, props.reply_to);
    add(p.type, AMQP_BASIC_TYPE_FLAG, props.type);
    if (!p.headers.empty()) {
      props._flags |= AMQP_BASIC_HEADERS_FLAG;
      props.headers = headers.table();
    }
  }
  EncodedTable headers;
  amqp_basic_properties_t props{};
};

Properties decode_properties(const amqp_basic_properties_t& p) {
  Properties out;
  auto get = [&](amqp_flags_t flag, const amqp_bytes_t& field, std::string& to) {
    if ((p._flags & flag) != 0) to = str(field);
  };
  get(AMQP_BASIC_CONTENT_TYPE_FLAG, p.content_type, out.content_type);
  get(AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id, out.message_id);
  get(AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id, out.correlation_id);
  get(AMQP_BASIC_REPLY_TO_FLAG, p.reply_to, out.reply_to);
  get(AMQP_BASIC_TYPE_FLAG, p.type, out.type);
  out.persistent = (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) != 0 && p.delivery_mode == 2;
  if ((p._flags & AMQP_BASIC_HEADERS_FLAG) != 0) out.headers = decode_table(p.headers);
  return out;
}

}  // namespace

const FieldValue* find(const Table& t, std::string_view key) {
  auto it = std::find_if(t.begin(), t.end(), [&](const auto& e) { return e.first == key; });
  return it == t.end() ? nullptr : &it->second;
}

std::optional<std::int64_t> find_int(const Table& t, std::string_view key) {
  const auto* v = find(t, key);
  if (v == nullptr) return std::nullopt;
  if (const auto* i = std::get_if<std::int64_t>(v)) return *i;
  return std::nullopt;
}

void set(Table& t, std::string key, FieldValue value) {
  auto it = std::find_if(t.begin(), t.end(), [&](const auto& e) { return e.first == key; });
  if (it != t.end()) {
    it->second = std::move(value);
  } else {
    t.emplace_back(std::move(key), std::move(value));
  }
}

void Connection::Deleter::operator()(amqp_connection_state_t_* s) const noexcept {
  amqp_destroy_connection(s);  // also closes the socket
}

Connection::Connection(const Url& url, const ConnectOptions& opts) {
  state_.reset(amqp_new_connection());
  if (!state_) throw Error("connect: out of memory");
  amqp_socket_t* sock = amqp_tcp_socket_new(state_.get());
  if (sock == nullptr) throw Error("connect: cannot create a socket");
  auto tv = to_timeval(opts.timeout);
  // Refused and unreachable both read "a socket error occurred": rabbitmq-c keeps
  // the socket's own error to itself (errno is EINPROGRESS from its non-blocking connect).
  check_status(amqp_socket_open_noblock(sock, url.host.c_str(), url.port, &tv), "connect");
  check_status(amqp_set_handshake_timeout(state_.get(), &tv), "connect");
  check_status(amqp_set_rpc_timeout(state_.get(), &tv), "connect");

  // Merged by rabbitmq-c into its defaults (capabilities recursively).
  const std::string product = "email-listener";
  amqp_table_entry_t capability{};
  capability.key = bytes("connection.blocked");  // see Blocked
  capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  capability.value.value.boolean = 1;
  std::vector<amqp_table_entry_t> props(3);
  props[0].key = bytes("product");
  props[0].value.kind = AMQP_FIELD_KIND_UTF8;
  props[0].value.value.bytes = bytes(product);
  props[1].key = bytes("capabilities");
  props[1].value.kind = AMQP_FIELD_KIND_TABLE;
  props[1].value.value.table.num_entries = 1;
  props[1].value.value.table.entries = &capability;
  props[2].key = bytes("connection_name");
  props[2].value.kind = AMQP_FIELD_KIND_UTF8;
  props[2].value.value.bytes = bytes(opts.name);
  amqp_table_t client_props;
  client_props.num_entries = opts.name.empty() ? 2 : 3;
  client_props.entries = props.data();

  check(amqp_login_with_properties(
            state_.get(), url.vhost.c_str(), 0, kFrameMax, static_cast<int>(opts.heartbeat.count()),
            &client_props, AMQP_SASL_METHOD_PLAIN, url.user.c_str(), url.password.reveal().c_str()),
        "login");
  amqp_channel_open(state_.get(), kChannel);
  check(amqp_get_rpc_reply(state_.get()), "channel.open");
}

Connection::~Connection() = default;

void Connection::close() noexcept {
  if (!state_) return;
  // Replies are not checked: whatever the broker answers, this connection is done.
  amqp_channel_close(state_.get(), kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(state_.get(), AMQP_REPLY_SUCCESS);
  state_.reset();
}

amqp_connection_state_t_* Connection::live() const {
  if (!state_) throw Error("connection already closed");
  return state_.get();
}

void Connection::confirm_select() {
  auto* s = live();
  amqp_confirm_select(s, kChannel);
  check(amqp_get_rpc_reply(s), "confirm.select");
  confirms_ = true;
  next_tag_ = 0;
}

void Connection::declare_queue(const QueueSpec& spec) {
  auto* s = live();
  EncodedTable args(spec.arguments);
  amqp_queue_declare(s, kChannel, bytes(spec.name), 0, spec.durable ? 1 : 0, spec.exclusive ? 1 : 0,
                     spec.auto_delete ? 1 : 0, args.table());
  check(amqp_get_rpc_reply(s), "queue.declare " + spec.name);
}

QueueCounts Connection::declare_queue_passive(const std::string& name) {
  auto* s = live();
  auto* ok = amqp_queue_declare(s, kChannel, bytes(name), 1, 0, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(s), "queue.declare (passive) " + name);
  if (ok == nullptr) throw Error("queue.declare (passive) " + name + ": no reply");
  return QueueCounts{ok->message_count, ok->consumer_count};
}

void Connection::declare_exchange(const std::string& name, const std::string& type, bool durable) {
  auto* s = live();
  amqp_exchange_declare(s, kChannel, bytes(name), bytes(type), 0, durable ? 1 : 0, 0, 0,
                        amqp_empty_table);
  check(amqp_get_rpc_reply(s), "exchange.declare " + name);
}

void Connection::bind_queue(const std::string& queue, const std::string& exchange,
                            const std::string& routing_key) {
  auto* s = live();
  amqp_queue_bind(s, kChannel, bytes(queue), bytes(exchange), bytes(routing_key), amqp_empty_table);
  check(amqp_get_rpc_reply(s), "queue.bind " + queue);
}

void Connection::delete_queue(const std::string& name) {
  auto* s = live();
  amqp_queue_delete(s, kChannel, bytes(name), 0, 0);
  check(amqp_get_rpc_reply(s), "queue.delete " + name);
}

void Connection::qos(std::uint16_t prefetch) {
  auto* s = live();
  amqp_basic_qos(s, kChannel, 0, prefetch, 0);
  check(amqp_get_rpc_reply(s), "basic.qos");
}

std::string Connection::consume(const std::string& queue, bool no_ack) {
  auto* s = live();
  auto* ok = amqp_basic_consume(s, kChannel, bytes(queue), amqp_empty_bytes, 0, no_ack ? 1 : 0, 0,
                                amqp_empty_table);
  check(amqp_get_rpc_reply(s), "basic.consume " + queue);
  if (ok == nullptr) throw Error("basic.consume " + queue + ": no reply");
  return str(ok->consumer_tag);
}

void Connection::cancel(const std::string& consumer_tag) {
  auto* s = live();
  amqp_basic_cancel(s, kChannel, bytes(consumer_tag));
  check(amqp_get_rpc_reply(s), "basic.cancel");
}

std::uint64_t Connection::publish(const Message& m, bool mandatory) {
  auto* s = live();
  EncodedProperties p(m.props);
  check_status(amqp_basic_publish(s, kChannel, bytes(m.exchange), bytes(m.routing_key),
                                  mandatory ? 1 : 0, 0, &p.props, bytes(m.body)),
               "basic.publish");
  return confirms_ ? ++next_tag_ : 0;
}

void Connection::ack(std::uint64_t delivery_tag) {
  check_status(amqp_basic_ack(live(), kChannel, delivery_tag, 0), "basic.ack");
}

void Connection::nack(std::uint64_t delivery_tag, bool requeue) {
  check_status(amqp_basic_nack(live(), kChannel, delivery_tag, 0, requeue ? 1 : 0), "basic.nack");
}

void Connection::reject(std::uint64_t delivery_tag, bool requeue) {
  check_status(amqp_basic_reject(live(), kChannel, delivery_tag, requeue ? 1 : 0), "basic.reject");
}

namespace {

// The content (header and body frames) that follows a basic.deliver, basic.return or get-ok.
void read_content(amqp_connection_state_t s, amqp_channel_t channel, Message& out) {
  amqp_message_t msg;
  check(amqp_read_message(s, channel, &msg, 0), "read message");
  out.body = str(msg.body);
  out.props = decode_properties(msg.properties);
  amqp_destroy_message(&msg);
}

}  // namespace

std::optional<Delivery> Connection::get(const std::string& queue, bool no_ack) {
  auto* s = live();
  auto r = amqp_basic_get(s, kChannel, bytes(queue), no_ack ? 1 : 0);
  check(r, "basic.get " + queue);
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
  if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) throw Error("basic.get: unexpected reply");
  const auto* ok = static_cast<const amqp_basic_get_ok_t*>(r.reply.decoded);
  Delivery d;
  d.delivery_tag = ok->delivery_tag;
  d.redelivered = ok->redelivered != 0;
  d.message.exchange = str(ok->exchange);
  d.message.routing_key = str(ok->routing_key);
  read_content(s, kChannel, d.message);
  return d;
}

std::optional<Event> Connection::poll(std::chrono::milliseconds wait) {
  auto* s = live();
  // Everything the previous frames pointed to was copied out.
  amqp_maybe_release_buffers(s);
  amqp_frame_t f;
  auto tv = to_timeval(wait);
  const int status = amqp_simple_wait_frame_noblock(s, &f, &tv);
  if (status == AMQP_STATUS_TIMEOUT) return std::nullopt;
  check_status(status, "read");
  if (f.frame_type != AMQP_FRAME_METHOD) return Event{};  // stray content: not ours to read
  switch (f.payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      const auto* m = static_cast<const amqp_basic_deliver_t*>(f.payload.method.decoded);
      Delivery d;
      d.delivery_tag = m->delivery_tag;
      d.redelivered = m->redelivered != 0;
      d.message.exchange = str(m->exchange);
      d.message.routing_key = str(m->routing_key);
      read_content(s, f.channel, d.message);
      return Event{std::move(d)};
    }
    case AMQP_BASIC_ACK_METHOD: {
      const auto* m = static_cast<const amqp_basic_ack_t*>(f.payload.method.decoded);
      return Event{Confirm{m->delivery_tag, m->multiple != 0, true}};
    }
    case AMQP_BASIC_NACK_METHOD: {
      const auto* m = static_cast<const amqp_basic_nack_t*>(f.payload.method.decoded);
      return Event{Confirm{m->delivery_tag, m->multiple != 0, false}};
    }
    case AMQP_BASIC_RETURN_METHOD: {
      const auto* m = static_cast<const amqp_basic_return_t*>(f.payload.method.decoded);
      Returned r;
      r.reply_code = m->reply_code;
      r.reply_text = str(m->reply_text);
      r.message.exchange = str(m->exchange);
      r.message.routing_key = str(m->routing_key);
      read_content(s, f.channel, r.message);
      return Event{std::move(r)};
    }
    case AMQP_CONNECTION_BLOCKED_METHOD: {
      const auto* m = static_cast<const amqp_connection_blocked_t*>(f.payload.method.decoded);
      return Event{Blocked{true, str(m->reason)}};
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      return Event{Blocked{false, {}}};
    case AMQP_BASIC_CANCEL_METHOD:
      throw Error("the broker cancelled the consumer (queue deleted?)");
    case AMQP_CHANNEL_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_channel_close_t*>(f.payload.method.decoded);
      std::string why = "channel closed by the broker: " + std::to_string(m->reply_code) + " " +
                        str(m->reply_text);
      amqp_channel_close_ok_t ok{};
      amqp_send_method(s, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      throw Error(why);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_connection_close_t*>(f.payload.method.decoded);
      std::string why = "connection closed by the broker: " + std::to_string(m->reply_code) + " " +
                        str(m->reply_text);
      amqp_connection_close_ok_t ok{};
      amqp_send_method(s, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      throw Error(why);
    }
    default:
      return Event{};
  }
}

bool Connection::buffered() const {
  if (!state_) return false;
  return amqp_frames_enqueued(state_.get()) != 0 || amqp_data_in_buffer(state_.get()) != 0;
}

int Connection::fd() const { return state_ ? amqp_get_sockfd(state_.get()) : -1; }

}  // namespace el::amqp
