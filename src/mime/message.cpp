// Raw RFC 5322 message -> JSON via GMime 3: headers, addresses, bodies, attachments, parse errors.
#include "mime/message.hpp"

#include <gmime/gmime.h>
#include <iconv.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "core/types.hpp"
#include "mime/gobject_ptr.hpp"
#include "mime/text.hpp"

namespace el::mime {
namespace {

namespace json = boost::json;
using detail::GCharPtr;
using detail::GPtr;

// A garbage message can produce one warning per line; past this many the rest are counted only.
constexpr std::size_t kMaxParseErrors = 50;
// GMime refuses deeper nesting itself (GMIME_CRIT_NESTING_OVERFLOW); this bounds our recursion
// independently of that limit.
constexpr int kMaxDepth = 64;

class ErrorList {
 public:
  void add(std::string msg) {
    if (list_.size() < kMaxParseErrors) {
      list_.push_back(detail::to_valid_utf8(msg));
    } else {
      ++dropped_;
    }
  }
  bool empty() const { return list_.empty(); }
  json::array to_json() const {
    json::array a;
    a.reserve(list_.size() + 1);
    for (const auto& e : list_) a.emplace_back(e);
    if (dropped_ > 0) a.emplace_back(std::to_string(dropped_) + " more parse errors omitted");
    return a;
  }

 private:
  std::vector<std::string> list_;
  std::size_t dropped_ = 0;
};

const char* describe(GMimeParserWarning code) {
  switch (code) {
    case GMIME_WARN_DUPLICATED_HEADER:
      return "duplicated header";
    case GMIME_WARN_DUPLICATED_PARAMETER:
      return "duplicated header parameter";
    case GMIME_WARN_UNENCODED_8BIT_HEADER:
      return "unencoded 8-bit header";
    case GMIME_WARN_INVALID_CONTENT_TYPE:
      return "invalid Content-Type";
    case GMIME_WARN_INVALID_RFC2047_HEADER_VALUE:
      return "invalid RFC 2047 encoded header";
    case GMIME_WARN_MALFORMED_MULTIPART:
      return "malformed multipart";
    case GMIME_WARN_TRUNCATED_MESSAGE:
      return "truncated message (input ends inside the headers or an unclosed multipart)";
    case GMIME_WARN_MALFORMED_MESSAGE:
      return "malformed message";
    case GMIME_CRIT_INVALID_HEADER_NAME:
      return "invalid header name";
    case GMIME_CRIT_CONFLICTING_HEADER:
      return "conflicting header";
    case GMIME_CRIT_CONFLICTING_PARAMETER:
      return "conflicting header parameter";
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
      return "multipart without boundary";
    case GMIME_WARN_INVALID_PARAMETER:
      return "invalid header parameter";
    case GMIME_WARN_INVALID_ADDRESS_LIST:
      return "invalid address list";
    case GMIME_CRIT_NESTING_OVERFLOW:
      return "MIME nesting too deep";
    case GMIME_WARN_PART_WITHOUT_CONTENT:
      return "MIME part without content";
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
      return "MIME part without headers or content";
  }
  return "parser warning";
}

// GMime calls this during parsing and also later, when header values are decoded lazily; the
// ErrorList lives for the whole to_json call. C code is on the stack: nothing may escape.
void on_parser_warning(gint64 offset, GMimeParserWarning code, const gchar* item,
                       gpointer user_data) noexcept {
  try {
    std::string msg = describe(code);
    if (item != nullptr && *item != '\0') {
      std::string_view v(item);
      msg += ": ";
      msg += v.substr(0, 120);
      if (v.size() > 120) msg += "...";
    }
    if (offset >= 0) msg += " (at byte " + std::to_string(offset) + ")";
    static_cast<ErrorList*>(user_data)->add(std::move(msg));
  } catch (...) {
    // Out of memory while describing a warning: losing the warning is the lesser evil.
  }
}

json::string jstr(std::string_view s) {
  if (detail::is_valid_utf8(s)) return json::string(s);
  return json::string(detail::to_valid_utf8(s));
}

json::value jstr_or_null(const char* s) {
  if (s == nullptr) return nullptr;
  return jstr(s);
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return r;
}

std::string mime_type_of(GMimeObject* obj) {
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  if (ct == nullptr) return "application/octet-stream";
  GCharPtr mt(g_mime_content_type_get_mime_type(ct));
  return mt ? lower(mt.get()) : std::string("application/octet-stream");
}

// Flattens groups ("Team: a@x, b@x;") into their members: the application wants recipients.
void append_addresses(InternetAddressList* list, json::array& out, int depth = 0) {
  if (list == nullptr || depth > 4) return;
  const int n = internet_address_list_length(list);
  for (int i = 0; i < n; ++i) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
      append_addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), out,
                       depth + 1);
    } else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
      const char* name = internet_address_get_name(ia);
      const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
      json::object a;
      a.reserve(2);
      a.emplace("name", jstr(name != nullptr ? name : ""));
      a.emplace("address", jstr(addr != nullptr ? addr : ""));
      out.emplace_back(std::move(a));
    }
  }
}

json::array address_list(InternetAddressList* list) {
  json::array a;
  append_addresses(list, a);
  return a;
}

json::value first_address(InternetAddressList* list) {
  json::array a = address_list(list);
  if (a.empty()) return nullptr;
  return std::move(a.front());
}

// Offset just past the empty line that ends the headers, or npos when there is none.
std::size_t headers_end(std::string_view raw) {
  std::size_t pos = 0;
  if (!raw.empty() && raw[0] == '\n') return 1;
  if (raw.starts_with("\r\n")) return 2;
  for (;;) {
    const std::size_t nl = raw.find('\n', pos);
    if (nl == std::string_view::npos) return std::string_view::npos;
    if (nl + 1 < raw.size() && raw[nl + 1] == '\n') return nl + 2;
    if (nl + 2 < raw.size() && raw[nl + 1] == '\r' && raw[nl + 2] == '\n') return nl + 3;
    pos = nl + 1;
  }
}

struct Body {
  std::string text;
  std::string html;
};

// Several inline text parts (Apple Mail puts text, image, text in multipart/mixed; lists append
// a footer part) are joined in document order, each starting on a new line.
void append_block(std::string& dst, std::string_view src) {
  if (src.empty()) return;
  if (!dst.empty() && dst.back() != '\n') dst.push_back('\n');
  dst.append(src);
}

// A window onto a part's bytes: either the raw input (no copy) or a decoded buffer.
struct Content {
  std::string_view bytes;
  GPtr<GMimeStream> holder;  // owns the decoded buffer when bytes points into it
};

// The encoded bytes of a part as they sit in the input, when the parser kept them in our memory
// stream (it does: persistent streams); false otherwise.
bool raw_content(GMimeDataWrapper* w, std::string_view* out) {
  GMimeStream* s = g_mime_data_wrapper_get_stream(w);
  if (s == nullptr || !GMIME_IS_STREAM_MEM(s)) return false;
  GByteArray* a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
  if (a == nullptr) return false;
  const gint64 len = static_cast<gint64>(a->len);
  const gint64 start = std::min(std::max<gint64>(s->bound_start, 0), len);
  const gint64 end = s->bound_end < 0 ? len : std::min(s->bound_end, len);
  if (end < start) return false;
  *out = std::string_view(reinterpret_cast<const char*>(a->data) + start,
                          static_cast<std::size_t>(end - start));
  return true;
}

// Base64 that does not end on a 4-character boundary lost its tail (cut download, bad MTA).
void check_base64(std::string_view raw, const std::string& path, ErrorList& errors) {
  std::size_t chars = 0;
  std::size_t invalid = 0;
  bool padded = false;
  for (unsigned char c : raw) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
        c == '/') {
      ++chars;
    } else if (c == '=') {
      ++chars;
      padded = true;
    } else if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
      ++invalid;
    }
  }
  if (chars % 4 != 0) {
    errors.add("truncated base64 in part " + path + " (" + std::to_string(chars % 4) +
               " characters left over" + (padded ? "" : ", no padding") + ")");
  }
  if (invalid > 0) {
    errors.add("invalid characters in base64 of part " + path + " (" + std::to_string(invalid) +
               " ignored)");
  }
}

Content decode_part(GMimePart* part, const std::string& path, ErrorList& errors) {
  Content c;
  GMimeDataWrapper* w = g_mime_part_get_content(part);
  if (w == nullptr) return c;
  const GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(w);
  std::string_view raw;
  const bool have_raw = raw_content(w, &raw);
  if (have_raw && enc == GMIME_CONTENT_ENCODING_BASE64) check_base64(raw, path, errors);
  if (have_raw && (enc == GMIME_CONTENT_ENCODING_DEFAULT || enc == GMIME_CONTENT_ENCODING_7BIT ||
                   enc == GMIME_CONTENT_ENCODING_8BIT || enc == GMIME_CONTENT_ENCODING_BINARY)) {
    c.bytes = raw;  // identity encoding: the input bytes are the content
    return c;
  }
  c.holder.reset(g_mime_stream_mem_new());
  g_mime_data_wrapper_write_to_stream(w, c.holder.get());
  GByteArray* a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(c.holder.get()));
  if (a != nullptr && a->len > 0) {
    c.bytes = std::string_view(reinterpret_cast<const char*>(a->data), a->len);
  }
  return c;
}

class Walker {
 public:
  Walker(const ParseOptions& opts, bool crlf, ErrorList& errors)
      : opts_(opts), crlf_(crlf), errors_(errors) {}

  void walk(GMimeObject* obj, const std::string& path, Body& body, int depth) {
    if (depth > kMaxDepth) {
      errors_.add("MIME nesting deeper than " + std::to_string(kMaxDepth) + " at part " + path +
                  ": ignored");
      return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
      add_message_attachment(GMIME_MESSAGE_PART(obj));
    } else if (GMIME_IS_MULTIPART(obj)) {
      walk_multipart(GMIME_MULTIPART(obj), path, body, depth);
    } else if (GMIME_IS_PART(obj)) {
      walk_part(GMIME_PART(obj), path, body);
    }
  }

  json::array take_attachments() { return std::move(attachments_); }

 private:
  void walk_multipart(GMimeMultipart* mp, const std::string& path, Body& body, int depth) {
    const int n = g_mime_multipart_get_count(mp);
    auto child_path = [&](int i) {
      return path.empty() ? std::to_string(i + 1) : path + "." + std::to_string(i + 1);
    };
    GMimeContentType* ct = g_mime_object_get_content_type(GMIME_OBJECT(mp));
    if (ct != nullptr && g_mime_content_type_is_type(ct, "multipart", "alternative")) {
      // Alternatives render the same content: the first text/plain and the first text/html
      // found among them win; attachments of every alternative (related images) are kept.
      std::vector<Body> alts(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        walk(g_mime_multipart_get_part(mp, i), child_path(i), alts[static_cast<std::size_t>(i)],
             depth + 1);
      }
      for (auto& a : alts) {
        if (!a.text.empty()) {
          append_block(body.text, a.text);
          break;
        }
      }
      for (auto& a : alts) {
        if (!a.html.empty()) {
          append_block(body.html, a.html);
          break;
        }
      }
      return;
    }
    for (int i = 0; i < n; ++i) {
      walk(g_mime_multipart_get_part(mp, i), child_path(i), body, depth + 1);
    }
  }

  void walk_part(GMimePart* part, const std::string& path, Body& body) {
    GMimeObject* obj = GMIME_OBJECT(part);
    GMimeContentType* ct = g_mime_object_get_content_type(obj);
    const bool plain = ct != nullptr && g_mime_content_type_is_type(ct, "text", "plain");
    const bool html = ct != nullptr && g_mime_content_type_is_type(ct, "text", "html");
    const char* disposition = g_mime_object_get_disposition(obj);
    const bool attachment =
        disposition != nullptr && g_ascii_strcasecmp(disposition, "attachment") == 0;
    // A named text part is a file the sender attached inline (a .txt, a .html page), not body.
    const bool body_part =
        (plain || html) && !attachment && g_mime_part_get_filename(part) == nullptr;
    if (!body_part) {
      add_part_attachment(part, path);
      return;
    }
    Content c = decode_part(part, path, errors_);
    const char* charset = g_mime_content_type_get_parameter(ct, "charset");
    scratch_.clear();
    const detail::DecodeResult r =
        detail::append_decoded(scratch_, c.bytes, charset != nullptr ? charset : "");
    note_decode(r, charset, path);
    std::string& dst = plain ? body.text : body.html;
    if (!dst.empty() && dst.back() != '\n') dst.push_back('\n');
    detail::append_normalized_newlines(dst, scratch_);
  }

  void note_decode(const detail::DecodeResult& r, const char* charset, const std::string& path) {
    if (r.unknown_charset) {
      errors_.add("unknown charset \"" + std::string(charset != nullptr ? charset : "") +
                  "\" in part " + path + ": decoded as UTF-8 if valid, else Latin-1");
    }
    if (r.ascii_fallback) {
      errors_.add("8-bit bytes in part " + path +
                  " without a usable charset: decoded as windows-1252");
    }
    if (r.replaced > 0) {
      errors_.add(std::to_string(r.replaced) + " undecodable byte sequence(s) in part " + path +
                  " (charset " + std::string(charset != nullptr ? charset : "us-ascii") +
                  ") replaced with U+FFFD");
    }
  }

  // The attachment budget covers a prefix of the attachments in document order: once one does
  // not fit, it and all later ones carry metadata only, so "truncated" never has gaps.
  void add_content(json::object& a, std::string_view bytes) {
    a.emplace("size", bytes.size());
    if (!budget_exhausted_ && bytes.size() <= opts_.max_attachment_bytes - included_) {
      included_ += bytes.size();
      json::string b64;
      b64.resize(detail::base64_encoded_size(bytes.size()));
      detail::base64_encode(bytes, b64.data());
      a.emplace("content_base64", std::move(b64));
    } else {
      budget_exhausted_ = true;
      a.emplace("truncated", true);
    }
  }

  void add_part_attachment(GMimePart* part, const std::string& path) {
    GMimeObject* obj = GMIME_OBJECT(part);
    json::object a;
    a.reserve(7);
    a.emplace("filename", jstr_or_null(g_mime_part_get_filename(part)));
    a.emplace("content_type", jstr(mime_type_of(obj)));
    const char* cid = g_mime_object_get_content_id(obj);
    const char* disposition = g_mime_object_get_disposition(obj);
    Content c = decode_part(part, path, errors_);
    add_content(a, c.bytes);
    if (cid != nullptr) a.emplace("content_id", jstr(cid));
    // Undeclared disposition: a part referenced by Content-ID is shown inline (related images).
    a.emplace("disposition", disposition != nullptr ? jstr(lower(disposition))
                                                    : json::string(cid ? "inline" : "attachment"));
    attachments_.emplace_back(std::move(a));
  }

  // A forwarded message is delivered whole, as an .eml attachment; its own parts are not
  // merged into the outer message's text or attachments.
  void add_message_attachment(GMimeMessagePart* mp) {
    GMimeObject* obj = GMIME_OBJECT(mp);
    json::object a;
    a.reserve(7);
    const char* filename = g_mime_object_get_content_disposition_parameter(obj, "filename");
    if (filename == nullptr) filename = g_mime_object_get_content_type_parameter(obj, "name");
    a.emplace("filename", jstr_or_null(filename));
    a.emplace("content_type", jstr(mime_type_of(obj)));
    GPtr<GMimeStream> mem(g_mime_stream_mem_new());
    GMimeMessage* inner = g_mime_message_part_get_message(mp);
    if (inner != nullptr) {
      detail::FormatOptionsPtr fo(g_mime_format_options_new());
      if (crlf_) g_mime_format_options_set_newline_format(fo.get(), GMIME_NEWLINE_FORMAT_DOS);
      g_mime_object_write_to_stream(GMIME_OBJECT(inner), fo.get(), mem.get());
    }
    GByteArray* arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
    std::string_view bytes;
    if (arr != nullptr && arr->len > 0) {
      bytes = std::string_view(reinterpret_cast<const char*>(arr->data), arr->len);
    }
    add_content(a, bytes);
    const char* cid = g_mime_object_get_content_id(obj);
    if (cid != nullptr) a.emplace("content_id", jstr(cid));
    const char* disposition = g_mime_object_get_disposition(obj);
    a.emplace("disposition",
              disposition != nullptr ? jstr(lower(disposition)) : json::string("attachment"));
    attachments_.emplace_back(std::move(a));
  }

  const ParseOptions& opts_;
  bool crlf_;
  ErrorList& errors_;
  json::array attachments_;
  std::size_t included_ = 0;
  bool budget_exhausted_ = false;
  std::string scratch_;  // decoded text before newline normalisation, reused across parts
};

json::value format_date(GDateTime* dt) {
  if (dt == nullptr) return nullptr;
  const auto t =
      std::chrono::system_clock::time_point(std::chrono::seconds(g_date_time_to_unix(dt)));
  return json::string(core::format_rfc3339(t));
}

// message_id and in_reply_to drop the angle brackets: they are msg-id syntax (RFC 5322 3.6.4),
// not part of the identifier, and "references" (a list of ids) is given the same way, so the
// three compare directly for threading.
json::value first_reference(GMimeParserOptions* po, const char* value) {
  if (value == nullptr) return nullptr;
  detail::ReferencesPtr refs(g_mime_references_parse(po, value));
  if (refs && g_mime_references_length(refs.get()) > 0) {
    return jstr(g_mime_references_get_message_id(refs.get(), 0));
  }
  return nullptr;
}

json::array reference_list(GMimeParserOptions* po, const char* value) {
  json::array a;
  if (value == nullptr) return a;
  detail::ReferencesPtr refs(g_mime_references_parse(po, value));
  if (!refs) return a;
  const int n = g_mime_references_length(refs.get());
  a.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) a.emplace_back(jstr(g_mime_references_get_message_id(refs.get(), i)));
  return a;
}

// GMime files the Content-* headers of the top level under the message's MIME part, not the
// message; the application wants the header block as sent, so both lists are merged back into
// input order by offset.
json::array header_list(GMimeObject* message, GMimeObject* part) {
  struct Entry {
    gint64 offset;
    GMimeHeader* header;
  };
  std::vector<Entry> entries;
  for (GMimeObject* obj : {message, part}) {
    if (obj == nullptr) continue;
    GMimeHeaderList* list = g_mime_object_get_header_list(obj);
    if (list == nullptr) continue;
    const int n = g_mime_header_list_get_count(list);
    for (int i = 0; i < n; ++i) {
      GMimeHeader* h = g_mime_header_list_get_header_at(list, i);
      entries.push_back({g_mime_header_get_offset(h), h});
    }
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.offset < b.offset; });
  json::array a;
  a.reserve(entries.size());
  gint64 last = -2;
  for (const Entry& e : entries) {
    if (e.offset >= 0 && e.offset == last) continue;  // the same header seen through both lists
    last = e.offset;
    const char* name = g_mime_header_get_name(e.header);
    const char* value = g_mime_header_get_value(e.header);
    json::array pair;
    pair.reserve(2);
    pair.emplace_back(jstr(name != nullptr ? name : ""));
    pair.emplace_back(jstr(value != nullptr ? value : ""));
    a.emplace_back(std::move(pair));
  }
  return a;
}

json::array string_list(const std::vector<std::string>& v) {
  json::array a;
  a.reserve(v.size());
  for (const auto& s : v) a.emplace_back(jstr(s));
  return a;
}

// A stream over the caller's bytes without copying them: a GByteArray shell around the
// string_view's data, with the stream told it does not own the array. The parser only reads.
struct BorrowedStream {
  detail::BorrowedByteArrayPtr array;
  GPtr<GMimeStream> stream;
};

BorrowedStream borrow(std::string_view raw) {
  BorrowedStream b;
  if (raw.empty()) {
    b.stream.reset(g_mime_stream_mem_new());
    return b;
  }
  b.array.reset(
      g_byte_array_new_take(reinterpret_cast<guint8*>(const_cast<char*>(raw.data())), raw.size()));
  b.stream.reset(g_mime_stream_mem_new_with_byte_array(b.array.get()));
  g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(b.stream.get()), FALSE);
  return b;
}

}  // namespace

namespace detail {
// External linkage and a trivial type: the stores cannot be optimised away, no destructor runs
// at exit, and the descriptors stay reachable for LeakSanitizer.
iconv_t g_pinned_gconv[48];
}  // namespace detail

// GMime's header decoders call iconv_open/iconv_close for each encoded word, and glibc unloads a
// gconv module (dlclose, munmap) when its last descriptor closes, so each call re-ran dlopen:
// 5x slower on small messages. One descriptor per common charset, held for the life of the
// process and never used, keeps those modules mapped. Written once under call_once, then
// read-only.
static void pin_gconv_modules() {
  static const char* const kCharsets[] = {
      "WINDOWS-1250", "WINDOWS-1251", "WINDOWS-1252", "WINDOWS-1253",  "WINDOWS-1254",
      "WINDOWS-1255", "WINDOWS-1256", "WINDOWS-1257", "WINDOWS-1258",  "ISO-8859-1",
      "ISO-8859-2",   "ISO-8859-3",   "ISO-8859-4",   "ISO-8859-5",    "ISO-8859-6",
      "ISO-8859-7",   "ISO-8859-8",   "ISO-8859-9",   "ISO-8859-13",   "ISO-8859-15",
      "KOI8-R",       "KOI8-U",       "ISO-2022-JP",  "ISO-2022-JP-2", "EUC-JP",
      "SHIFT_JIS",    "CP932",        "GB2312",       "GBK",           "GB18030",
      "BIG5",         "BIG5-HKSCS",   "EUC-KR",       "CP949",         "ISO-2022-KR",
      "UTF-7",        "UTF-16",       "TIS-620",      "CP874",         "CP866"};
  static_assert(std::size(kCharsets) <= std::size(detail::g_pinned_gconv));
  std::size_t i = 0;
  for (const char* cs : kCharsets) detail::g_pinned_gconv[i++] = iconv_open("UTF-8", cs);
}

void initialize() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_mime_init();
    pin_gconv_modules();
  });
}

json::object to_json(std::string_view raw, const MessageMeta& meta, const ParseOptions& opts) {
  initialize();
  ErrorList errors;

  // Per call, so concurrent calls share no mutable GMime state. Headers keep a pointer to these
  // options and decode lazily, so they outlive the message (declared first, destroyed last).
  detail::ParserOptionsPtr po(g_mime_parser_options_new());
  // Unlabelled 8-bit header bytes: UTF-8 when valid, else the usual Western mail charset.
  const char* fallback[] = {"utf-8", "windows-1252", "iso-8859-1", nullptr};
  g_mime_parser_options_set_fallback_charsets(po.get(), fallback);
  g_mime_parser_options_set_warning_callback(po.get(), on_parser_warning, &errors);

  BorrowedStream in = borrow(raw);
  GPtr<GMimeMessage> msg;
  {
    GPtr<GMimeParser> parser(g_mime_parser_new_with_stream(in.stream.get()));
    g_mime_parser_set_format(parser.get(), GMIME_FORMAT_MESSAGE);
    msg.reset(g_mime_parser_construct_message(parser.get(), po.get()));
  }

  const std::size_t nl = raw.find('\n');
  const bool crlf = nl != std::string_view::npos && nl > 0 && raw[nl - 1] == '\r';
  GMimeObject* top = msg ? GMIME_OBJECT(msg.get()) : nullptr;
  auto header = [&](const char* name) -> const char* {
    return top != nullptr ? g_mime_object_get_header(top, name) : nullptr;
  };

  if (raw.empty()) {
    errors.add("empty message");
  } else if (headers_end(raw) == std::string_view::npos) {
    errors.add("no end of headers (no empty line): message has headers only or is truncated");
  }
  if (top == nullptr && !raw.empty()) errors.add("not a parsable RFC 5322 message");

  json::object out;
  out.reserve(22);
  out.emplace("message_id",
              msg ? jstr_or_null(g_mime_message_get_message_id(msg.get())) : json::value(nullptr));
  out.emplace("subject",
              msg ? jstr_or_null(g_mime_message_get_subject(msg.get())) : json::value(nullptr));

  if (msg) {
    if (header("From") == nullptr) {
      errors.add("missing From header");
      out.emplace("from", nullptr);
    } else {
      json::value from = first_address(g_mime_message_get_from(msg.get()));
      if (from.is_null()) errors.add("From header has no valid address");
      out.emplace("from", std::move(from));
    }
    if (header("Sender") != nullptr) {
      out.emplace("sender", first_address(g_mime_message_get_sender(msg.get())));
    }
    out.emplace("reply_to", address_list(g_mime_message_get_reply_to(msg.get())));
    out.emplace("to", address_list(g_mime_message_get_to(msg.get())));
    out.emplace("cc", address_list(g_mime_message_get_cc(msg.get())));
    out.emplace("bcc", address_list(g_mime_message_get_bcc(msg.get())));
    if (header("Date") == nullptr) {
      errors.add("missing Date header");
      out.emplace("date", nullptr);
    } else {
      json::value date = format_date(g_mime_message_get_date(msg.get()));
      if (date.is_null()) errors.add("unparsable Date header: " + std::string(header("Date")));
      out.emplace("date", std::move(date));
    }
    out.emplace("in_reply_to", first_reference(po.get(), header("In-Reply-To")));
    out.emplace("references", reference_list(po.get(), header("References")));
    GMimeObject* mime_part = g_mime_message_get_mime_part(msg.get());
    out.emplace("headers", header_list(top, mime_part));
    auto part_header = [&](const char* name) -> const char* {
      return mime_part != nullptr ? g_mime_object_get_header(mime_part, name) : nullptr;
    };
    if (header("MIME-Version") == nullptr &&
        (part_header("Content-Type") != nullptr ||
         part_header("Content-Transfer-Encoding") != nullptr)) {
      errors.add("missing MIME-Version header (MIME headers interpreted anyway)");
    }
  } else {
    out.emplace("from", nullptr);
    for (const char* k : {"reply_to", "to", "cc", "bcc"}) out.emplace(k, json::array());
    out.emplace("date", nullptr);
    out.emplace("in_reply_to", nullptr);
    out.emplace("references", json::array());
    out.emplace("headers", json::array());
  }

  Body body;
  Walker walker(opts, crlf, errors);
  if (msg) {
    GMimeObject* part = g_mime_message_get_mime_part(msg.get());
    if (part != nullptr) walker.walk(part, GMIME_IS_MULTIPART(part) ? "" : "1", body, 0);
  }
  out.emplace("text", json::string(body.text));
  out.emplace("html", json::string(body.html));
  out.emplace("attachments", walker.take_attachments());
  out.emplace("size", raw.size());
  out.emplace("uid", meta.uid);
  out.emplace("folder", jstr(meta.folder));
  out.emplace("flags", string_list(meta.flags));
  out.emplace("internal_date", meta.internal_date.empty() ? json::value(nullptr)
                                                          : json::value(jstr(meta.internal_date)));
  if (!errors.empty()) out.emplace("parse_errors", errors.to_json());
  return out;
}

}  // namespace el::mime
