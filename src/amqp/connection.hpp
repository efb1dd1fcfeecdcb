// One AMQP 0-9-1 connection with one channel, over rabbitmq-c.
//
// Thread-safety: none. rabbitmq-c is blocking and its connection state is not thread-safe, so an
// instance belongs to exactly one thread (a Link's, or a test's) for its whole life.
// Failure: every method throws Error on an I/O error, a timeout, or a channel or connection
// closed by the broker; the connection is then broken and must be replaced, never reused.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "amqp/url.hpp"

struct amqp_connection_state_t_;

namespace el::amqp {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// AMQP field tables, reduced to the value types we write and read. Received values of other
// types (floats, arrays, nested tables, timestamps) are dropped.
using FieldValue = std::variant<std::string, std::int64_t, bool>;
using Table = std::vector<std::pair<std::string, FieldValue>>;
const FieldValue* find(const Table& t, std::string_view key);
std::optional<std::int64_t> find_int(const Table& t, std::string_view key);
void set(Table& t, std::string key, FieldValue value);  // replaces an existing key

struct Properties {
  std::string content_type;
  std::string message_id;
  std::string correlation_id;
  std::string reply_to;
  std::string type;
  bool persistent = false;  // delivery_mode 2
  Table headers;
};

struct Message {
  std::string exchange;
  std::string routing_key;
  std::string body;
  Properties props;
};

struct Delivery {
  Message message;
  std::uint64_t delivery_tag = 0;
  bool redelivered = false;
};

struct QueueSpec {
  std::string name;
  bool durable = true;
  bool exclusive = false;
  bool auto_delete = false;
  Table arguments;
};

struct QueueCounts {
  std::uint32_t messages = 0;
  std::uint32_t consumers = 0;
};

struct ConnectOptions {
  std::chrono::milliseconds timeout{5000};  // TCP connect, handshake, and each synchronous call
  std::chrono::seconds heartbeat{30};
  std::string name;  // connection_name client property: shown by rabbitmqctl list_connections
};

// What Connection::poll() read. monostate: a frame of no interest (consumer ok, flow, ...).
struct Confirm {
  std::uint64_t tag = 0;
  bool multiple = false;
  bool ack = false;  // false: basic.nack
};
struct Returned {  // a mandatory publish that no queue took (sent before its confirm)
  Message message;
  std::uint16_t reply_code = 0;
  std::string reply_text;
};
// connection.blocked / unblocked: during a resource alarm the broker stops reading from
// connections that publish, so a publish would block the calling thread until it clears.
struct Blocked {
  bool blocked = false;
  std::string reason;
};
using Event = std::variant<std::monostate, Delivery, Confirm, Returned, Blocked>;

class Connection {
 public:
  // Connects, logs in and opens channel 1. Throws Error.
  Connection(const Url& url, const ConnectOptions& opts);
  // Without close(): the socket is just closed, which the broker treats like a crash of this
  // client (its unacknowledged deliveries go back to their queues, flagged redelivered).
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The close handshake, bounded by the timeout. Never throws; the connection is unusable after.
  void close() noexcept;

  // Publisher confirms from now on: publish() returns the sequence number the broker's
  // basic.ack / basic.nack will carry.
  void confirm_select();
  void declare_queue(const QueueSpec& spec);
  // Throws Error (and the channel is closed by the broker) when the queue does not exist.
  QueueCounts declare_queue_passive(const std::string& name);
  void declare_exchange(const std::string& name, const std::string& type, bool durable);
  void bind_queue(const std::string& queue, const std::string& exchange,
                  const std::string& routing_key);
  void delete_queue(const std::string& name);
  void qos(std::uint16_t prefetch);
  std::string consume(const std::string& queue, bool no_ack);  // returns the consumer tag
  void cancel(const std::string& consumer_tag);
  // Returns the confirm sequence number, 0 unless confirm_select() was called.
  std::uint64_t publish(const Message& m, bool mandatory);
  void ack(std::uint64_t delivery_tag);
  void nack(std::uint64_t delivery_tag, bool requeue);
  void reject(std::uint64_t delivery_tag, bool requeue);
  std::optional<Delivery> get(const std::string& queue, bool no_ack);

  // The next frame that arrived within `wait` (zero: only what is already there). nullopt: none.
  std::optional<Event> poll(std::chrono::milliseconds wait);
  // Frames or bytes already read from the socket: poll() has more without waiting for the fd.
  bool buffered() const;
  int fd() const;

 private:
  struct Deleter {
    void operator()(amqp_connection_state_t_* s) const noexcept;
  };
  amqp_connection_state_t_* live() const;  // throws once close() was called

  std::unique_ptr<amqp_connection_state_t_, Deleter> state_;
  bool confirms_ = false;
  std::uint64_t next_tag_ = 0;
};

}  // namespace el::amqp
