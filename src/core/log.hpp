// Structured logging: one line per event, key=value text or JSON. Thread-safe.
// Never pass a password, token or message body as a field: Secret values print as "***".
#pragma once
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace el::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };
enum class Format { text, json };

void configure(Level min_level, Format format);
bool parse_level(std::string_view s, Level& out);
bool enabled(Level l);

using Field = std::pair<std::string_view, std::string>;
// event: a short snake_case name ("imap_connected"); fields: context, mailbox id first by habit.
void write(Level l, std::string_view event, std::initializer_list<Field> fields = {});

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) {
  if (enabled(Level::debug)) write(Level::debug, e, f);
}
inline void info(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::info, e, f);
}
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::warn, e, f);
}
inline void error(std::string_view e, std::initializer_list<Field> f = {}) {
  write(Level::error, e, f);
}

}  // namespace el::log
