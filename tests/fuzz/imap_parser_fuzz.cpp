// libFuzzer target: the IMAP response parser must never crash, hang or over-allocate, and must
// give the same responses however the input is split.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "imap/parser.hpp"

namespace {

using el::imap::ResponseParser;

// Walks the value tree so that every node is touched (ASan checks the offsets).
std::size_t touch(const el::imap::Value& v) {
  std::size_t n = v.text().size();
  for (el::imap::Value c : v) n += touch(c);
  return n;
}

std::vector<std::string> parse_all(std::string_view in, std::size_t step) {
  ResponseParser p(el::imap::ParserLimits{.max_literal = 1 << 16, .max_line = 1 << 16});
  el::imap::Response r;
  std::vector<std::string> out;
  while (!in.empty()) {
    std::size_t used = 0;
    auto res = p.parse(in.substr(0, step), used, r);
    if (res == ResponseParser::Result::error) {
      out.push_back("error");
      break;
    }
    in.remove_prefix(used);
    if (res == ResponseParser::Result::done) {
      std::size_t n = 0;
      for (el::imap::Value v : r.data()) n += touch(v);
      for (el::imap::Value v : r.code_args()) n += touch(v);
      out.push_back(std::string(r.raw()) + "#" + std::to_string(n) + std::string(r.text()));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto whole = parse_all(in, in.size() + 1);
  auto split = parse_all(in, 3);
  if (whole != split) std::abort();
  return 0;
}
