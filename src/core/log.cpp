// Structured log lines to stderr, one write per line so concurrent lines never interleave.
#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>

#include "core/types.hpp"

namespace el::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<Format> g_format{Format::text};

std::string_view level_name(Level l) {
  switch (l) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
  }
  return "info";
}

void json_escape(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

void text_value(std::string& out, std::string_view s) {
  bool quote = s.empty() || s.find_first_of(" \"=\t\n\r") != std::string_view::npos;
  if (!quote) {
    out += s;
    return;
  }
  out += '"';
  json_escape(out, s);
  out += '"';
}
}  // namespace

void configure(Level min_level, Format format) {
  g_level = static_cast<int>(min_level);
  g_format = format;
}

bool parse_level(std::string_view s, Level& out) {
  if (s == "debug")
    out = Level::debug;
  else if (s == "info")
    out = Level::info;
  else if (s == "warn" || s == "warning")
    out = Level::warn;
  else if (s == "error")
    out = Level::error;
  else
    return false;
  return true;
}

bool enabled(Level l) { return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed); }

void write(Level l, std::string_view event, std::initializer_list<Field> fields) {
  if (!enabled(l)) return;
  const std::string ts = core::format_rfc3339(std::chrono::system_clock::now());
  std::string line;
  line.reserve(128);
  if (g_format.load(std::memory_order_relaxed) == Format::json) {
    line += "{\"ts\":\"" + ts + "\",\"level\":\"";
    line += level_name(l);
    line += "\",\"event\":\"";
    json_escape(line, event);
    line += '"';
    for (const auto& [k, v] : fields) {
      line += ",\"";
      json_escape(line, k);
      line += "\":\"";
      json_escape(line, v);
      line += '"';
    }
    line += "}\n";
  } else {
    line += ts;
    line += ' ';
    line += level_name(l);
    line += ' ';
    line += event;
    for (const auto& [k, v] : fields) {
      line += ' ';
      line += k;
      line += '=';
      text_value(line, v);
    }
    line += '\n';
  }
  // One write(2) per line: atomic for pipes up to PIPE_BUF and good enough for files.
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(2, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace el::log
