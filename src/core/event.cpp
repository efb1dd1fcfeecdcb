// Event serialization: the exact bytes the sink sends and signs.
#include "core/event.hpp"

#include <boost/json/serialize.hpp>

namespace el::core {

std::string serialize(const Event& e) {
  boost::json::object o;
  o["id"] = e.id;
  o["type"] = e.type;
  o["mailbox_id"] = e.mailbox_id;
  o["created_at"] = e.created_at;
  o["data"] = e.data;
  return boost::json::serialize(o);
}

}  // namespace el::core
