// An event for the application: what the sink delivers, serialized once so the signature covers
// exactly the bytes sent.
#pragma once
#include <boost/json/object.hpp>
#include <string>

namespace el::core {

struct Event {
  std::string id;    // stable for message.new (see message_event_id)
  std::string type;  // message.new | mailbox.state | mailbox.reset
  std::string mailbox_id;
  std::string created_at;  // RFC 3339
  boost::json::object data;
};

// {"id","type","mailbox_id","created_at","data"} as compact JSON.
std::string serialize(const Event& e);

}  // namespace el::core
