// mime_dump FILE.eml [max_attachment_bytes]: prints el::mime::to_json of one message, pretty.
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "mime/message.hpp"

namespace {

void pretty(std::ostream& os, const boost::json::value& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (v.is_object()) {
    const auto& o = v.get_object();
    if (o.empty()) {
      os << "{}";
      return;
    }
    os << "{\n";
    std::size_t i = 0;
    for (const auto& kv : o) {
      os << pad << "  " << boost::json::serialize(boost::json::value(kv.key())) << ": ";
      pretty(os, kv.value(), indent + 2);
      os << (++i < o.size() ? ",\n" : "\n");
    }
    os << pad << "}";
  } else if (v.is_array()) {
    const auto& a = v.get_array();
    if (a.empty()) {
      os << "[]";
      return;
    }
    os << "[\n";
    for (std::size_t i = 0; i < a.size(); ++i) {
      os << pad << "  ";
      pretty(os, a[i], indent + 2);
      os << (i + 1 < a.size() ? ",\n" : "\n");
    }
    os << pad << "]";
  } else {
    os << boost::json::serialize(v);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: mime_dump FILE.eml [max_attachment_bytes]\n";
    return 2;
  }
  std::ifstream f(argv[1], std::ios::binary);
  if (!f) {
    std::cerr << "cannot open " << argv[1] << "\n";
    return 1;
  }
  const std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  el::mime::initialize();
  el::mime::MessageMeta meta{42, "INBOX", {"\\Seen"}, "2024-03-05T13:30:02.000Z"};
  el::mime::ParseOptions opts;
  if (argc > 2) opts.max_attachment_bytes = std::strtoull(argv[2], nullptr, 10);
  pretty(std::cout, el::mime::to_json(raw, meta, opts), 0);
  std::cout << "\n";
}
