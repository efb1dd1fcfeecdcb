// Outgoing messages: OutgoingMessage -> RFC 5322 bytes with GMime 3 (structure, encodings, CRLF).
#include "mime/compose.hpp"

#include <arpa/inet.h>
#include <gmime/gmime.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "mime/gobject_ptr.hpp"
#include "mime/message.hpp"
#include "mime/text.hpp"

namespace el::mime {
namespace {

using detail::GPtr;

struct DateTimeUnref {
  void operator()(GDateTime* d) const noexcept {
    if (d != nullptr) g_date_time_unref(d);
  }
};
using DateTimePtr = std::unique_ptr<GDateTime, DateTimeUnref>;

constexpr std::size_t kMaxLine = 998;       // RFC 5322 2.1.1, without the CRLF
constexpr std::size_t kMaxAddress = 254;    // RFC 5321 4.5.3.1.3 (path minus the brackets)
constexpr std::size_t kMaxLocalPart = 64;   // RFC 5321 4.5.3.1.1
constexpr std::size_t kMaxLabel = 63;       // RFC 1035 2.3.4
constexpr std::size_t kMaxId = 250;         // msg-id / content-id: no RFC limit; folding needs one
constexpr std::size_t kMaxHeaderName = 76;  // a name plus ": " and one character fit in 78
constexpr std::size_t kMaxContentType = 200;  // type/subtype and parameters, before folding

[[noreturn]] void fail(const std::string& field, const std::string& why) {
  throw ComposeError(field, field + ": " + why);
}

bool ascii_alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 5322 atext.
bool atext(unsigned char c) {
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return ascii_alnum(c) || kSpecials.find(static_cast<char>(c)) != std::string_view::npos;
}

bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (g_ascii_tolower(a[i]) != g_ascii_tolower(b[i])) return false;
  }
  return true;
}

bool dot_atom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = '\0';
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!atext(static_cast<unsigned char>(c))) {
      return false;
    }
    prev = c;
  }
  return true;
}

// "..." with qtext, spaces and quoted-pairs; not empty inside.
bool quoted_string(std::string_view s) {
  if (s.size() < 3 || s.front() != '"' || s.back() != '"') return false;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      ++i;
      if (i + 1 >= s.size()) return false;  // the backslash quoted the closing quote
      const auto q = static_cast<unsigned char>(s[i]);
      if (q < 32 || q > 126) return false;
    } else if (c == '"' || c < 32 || c > 126) {
      return false;
    }
  }
  return true;
}

// One DNS label: LDH ASCII, or UTF-8 (an IDN U-label, A-label conversion is GMime's) whose ASCII
// characters are LDH; no hyphen at either end.
bool domain_label(std::string_view label) {
  if (label.empty() || label.size() > kMaxLabel) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  bool non_ascii = false;
  for (char ch : label) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      non_ascii = true;
    } else if (!ascii_alnum(c) && c != '-') {
      return false;
    }
  }
  return !non_ascii || detail::is_valid_utf8(label);
}

bool address_literal(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  std::string inner(s.substr(1, s.size() - 2));
  std::array<unsigned char, 16> buf{};
  if (inner.size() > 5 && ascii_iequals(std::string_view(inner).substr(0, 5), "IPv6:")) {
    return inet_pton(AF_INET6, inner.c_str() + 5, buf.data()) == 1;
  }
  return inet_pton(AF_INET, inner.c_str(), buf.data()) == 1;
}

bool domain(std::string_view s) {
  if (s.empty()) return false;
  if (s.front() == '[') return address_literal(s);
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = s.find('.', start);
    if (!domain_label(s.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool has_line_break_or_nul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// Unicode text for a header (subject, display name, filename, extra header value).
void check_header_text(const std::string& field, std::string_view s) {
  if (has_line_break_or_nul(s)) fail(field, "contains CR, LF or NUL");
  if (!detail::is_valid_utf8(s)) fail(field, "is not valid UTF-8");
}

// A msg-id or content-id without its angle brackets (which the caller may have included).
std::string normalize_id(const std::string& field, std::string_view id, bool need_at) {
  if (id.size() >= 2 && id.front() == '<' && id.back() == '>') id = id.substr(1, id.size() - 2);
  if (id.empty()) fail(field, "is empty");
  if (id.size() > kMaxId) fail(field, "longer than " + std::to_string(kMaxId) + " octets");
  for (char ch : id) {
    const auto c = static_cast<unsigned char>(ch);
    if (!atext(c) && c != '.' && c != '@' && c != '[' && c != ']') {
      fail(field, "invalid character in identifier");
    }
  }
  if (need_at && id.find('@') == std::string_view::npos) fail(field, "has no '@'");
  return std::string(id);
}

bool valid_header_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxHeaderName) return false;
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

// RFC 2045 token (type, subtype).
bool mime_token(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 32 || c >= 127) return false;
    if (std::string_view("()<>@,;:\\\"/[]?=").find(ch) != std::string_view::npos) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Owns the GMime objects and borrowed buffers of one compose() call.
class Builder {
 public:
  explicit Builder(const OutgoingMessage& msg) : msg_(msg), po_(g_mime_parser_options_new()) {}

  std::string build() {
    GPtr<GMimeMessage> message(g_mime_message_new(FALSE));
    GMimeObject* top = GMIME_OBJECT(message.get());
    // Headers are written in the order they are added.
    add_mailbox(g_mime_message_get_from(message.get()), msg_.from, "from");
    add_list(g_mime_message_get_to(message.get()), msg_.to, "to");
    add_list(g_mime_message_get_cc(message.get()), msg_.cc, "cc");
    add_list(g_mime_message_get_reply_to(message.get()), msg_.reply_to, "reply_to");
    for (std::size_t i = 0; i < msg_.bcc.size(); ++i) {
      check_mailbox(msg_.bcc[i], "bcc[" + std::to_string(i) + "]");  // checked, never written
    }
    check_header_text("subject", msg_.subject);
    g_mime_message_set_subject(message.get(), msg_.subject.c_str(), "utf-8");
    set_date(message.get());
    const std::string id = normalize_id("message_id", msg_.message_id, true);
    g_mime_object_set_header(top, "Message-ID", ("<" + id + ">").c_str(), nullptr);
    if (!msg_.in_reply_to.empty()) {
      const std::string irt = normalize_id("in_reply_to", msg_.in_reply_to, false);
      g_mime_object_set_header(top, "In-Reply-To", ("<" + irt + ">").c_str(), nullptr);
    }
    if (!msg_.references.empty()) {
      std::string refs;
      for (std::size_t i = 0; i < msg_.references.size(); ++i) {
        if (i > 0) refs += ' ';
        refs += '<';
        refs += normalize_id("references[" + std::to_string(i) + "]", msg_.references[i], false);
        refs += '>';
      }
      g_mime_object_set_header(top, "References", refs.c_str(), nullptr);
    }
    g_mime_object_set_header(top, "MIME-Version", "1.0", nullptr);
    for (const auto& [name, value] : msg_.headers) {
      const std::string field = "headers." + name;
      if (!valid_header_name(name)) fail(field, "invalid header name");
      if (reserved_header(name)) fail(field, "header is set by compose() and cannot be given");
      check_header_text(field, value);
      g_mime_object_append_header(top, name.c_str(), value.c_str(), "utf-8");
    }

    GPtr<GMimeObject> body = build_body();
    g_mime_message_set_mime_part(message.get(), body.get());
    return serialize(top);
  }

 private:
  void check_mailbox(const Address& a, const std::string& field) {
    if (!valid_address(a.address)) fail(field, "invalid address \"" + a.address + "\"");
    check_header_text(field, a.name);
  }

  void add_mailbox(InternetAddressList* list, const Address& a, const std::string& field) {
    check_mailbox(a, field);
    GPtr<InternetAddress> ia(
        internet_address_mailbox_new(a.name.empty() ? nullptr : a.name.c_str(), a.address.c_str()));
    // Without this GMime picks the smallest charset that fits (ISO-8859-1 for "Müller").
    internet_address_set_charset(ia.get(), "utf-8");
    // A UTF-8 domain is written as its A-label; one libidn2 cannot convert would go out as raw
    // 8-bit bytes in the header.
    const char* idn = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(ia.get()));
    if (idn == nullptr || !is_ascii(idn)) fail(field, "domain cannot be IDNA-encoded");
    internet_address_list_add(list, ia.get());
  }

  void add_list(InternetAddressList* list, const std::vector<Address>& v, const char* name) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      add_mailbox(list, v[i], std::string(name) + "[" + std::to_string(i) + "]");
    }
  }

  static bool is_ascii(std::string_view s) {
    for (char c : s) {
      if (static_cast<unsigned char>(c) >= 0x80) return false;
    }
    return true;
  }

  void set_date(GMimeMessage* message) {
    const auto secs =
        std::chrono::floor<std::chrono::seconds>(msg_.date.time_since_epoch()).count();
    DateTimePtr dt(g_date_time_new_from_unix_utc(static_cast<gint64>(secs)));
    if (!dt) fail("date", "out of range");
    g_mime_message_set_date(message, dt.get());
  }

  GPtr<GMimeObject> build_body() {
    const bool has_html = !msg_.html.empty();
    GPtr<GMimeObject> body;
    if (!msg_.text.empty() && has_html) {
      GPtr<GMimeMultipart> alt(g_mime_multipart_new_with_subtype("alternative"));
      add_part(alt.get(), text_part("plain", msg_.text, "text"));
      add_part(alt.get(), text_part("html", msg_.html, "html"));
      body.reset(GMIME_OBJECT(alt.release()));
    } else if (has_html) {
      body = text_part("html", msg_.html, "html");
    } else {
      body = text_part("plain", msg_.text, "text");  // possibly empty: a message needs a body
    }

    // Inline parts belong with the HTML that references them; without HTML nothing can, so they
    // travel in multipart/mixed (still inline, with their Content-ID).
    std::vector<GPtr<GMimeObject>> related, mixed;
    for (std::size_t i = 0; i < msg_.attachments.size(); ++i) {
      const OutgoingAttachment& a = msg_.attachments[i];
      GPtr<GMimeObject> part = attachment_part(a, "attachments[" + std::to_string(i) + "]");
      (has_html && !a.content_id.empty() ? related : mixed).push_back(std::move(part));
    }
    if (!related.empty()) {
      GPtr<GMimeMultipart> rel(g_mime_multipart_new_with_subtype("related"));
      // RFC 2387: type names the root part's media type.
      GMimeContentType* root_ct = g_mime_object_get_content_type(body.get());
      detail::GCharPtr root_type(g_mime_content_type_get_mime_type(root_ct));
      g_mime_object_set_content_type_parameter(GMIME_OBJECT(rel.get()), "type", root_type.get());
      add_part(rel.get(), std::move(body));
      for (auto& p : related) add_part(rel.get(), std::move(p));
      body.reset(GMIME_OBJECT(rel.release()));
    }
    if (!mixed.empty()) {
      GPtr<GMimeMultipart> mix(g_mime_multipart_new_with_subtype("mixed"));
      add_part(mix.get(), std::move(body));
      for (auto& p : mixed) add_part(mix.get(), std::move(p));
      body.reset(GMIME_OBJECT(mix.release()));
    }
    return body;
  }

  static void add_part(GMimeMultipart* mp, GPtr<GMimeObject> part) {
    g_mime_multipart_add(mp, part.get());  // takes its own reference
  }

  // Content over the caller's bytes, not a copy: the stream and its wrapper array live until
  // the message is written (borrowed_ outlives every GMime object of this call).
  void set_borrowed_content(GMimePart* part, std::string_view bytes) {
    GPtr<GMimeStream> stream;
    if (bytes.empty()) {
      stream.reset(g_mime_stream_mem_new());
    } else {
      detail::BorrowedByteArrayPtr array(g_byte_array_new_take(
          reinterpret_cast<guint8*>(const_cast<char*>(bytes.data())), bytes.size()));
      stream.reset(g_mime_stream_mem_new_with_byte_array(array.get()));
      g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream.get()), FALSE);
      borrowed_.push_back(std::move(array));
    }
    GPtr<GMimeDataWrapper> wrapper(
        g_mime_data_wrapper_new_with_stream(stream.get(), GMIME_CONTENT_ENCODING_DEFAULT));
    g_mime_part_set_content(part, wrapper.get());
  }

  // UTF-8 text in canonical form: line breaks become LF here and CRLF on output; a bare CR
  // would otherwise reach the wire.
  GPtr<GMimeObject> text_part(const char* subtype, std::string_view text, const char* field) {
    if (!detail::is_valid_utf8(text)) fail(field, "is not valid UTF-8");
    texts_.emplace_back();
    std::string& canon = texts_.back();
    canon.reserve(text.size());
    detail::append_normalized_newlines(canon, text);
    GPtr<GMimeTextPart> tp(g_mime_text_part_new_with_subtype(subtype));
    g_mime_text_part_set_charset(tp.get(), "utf-8");
    GMimePart* part = GMIME_PART(tp.get());
    set_borrowed_content(part, canon);
    // 7bit when it is already safe, else quoted-printable or base64, whichever is smaller;
    // either way no line exceeds 998 octets.
    g_mime_part_set_content_encoding(
        part, g_mime_part_get_best_content_encoding(part, GMIME_ENCODING_CONSTRAINT_7BIT));
    return GPtr<GMimeObject>(GMIME_OBJECT(tp.release()));
  }

  // type/subtype[; parameters] -> a content type, or ComposeError.
  GPtr<GMimeContentType> parse_content_type(const std::string& field, std::string_view s) {
    if (s.empty()) s = "application/octet-stream";
    if (s.size() > kMaxContentType) fail(field, "too long");
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if ((c < 32 && c != '\t') || c >= 127) fail(field, "must be printable ASCII");
    }
    const std::string_view mime = trim(s.substr(0, s.find(';')));
    const std::size_t slash = mime.find('/');
    if (slash == std::string_view::npos || !mime_token(mime.substr(0, slash)) ||
        !mime_token(mime.substr(slash + 1))) {
      fail(field, "not a type/subtype");
    }
    const std::string str(s);
    GPtr<GMimeContentType> ct(g_mime_content_type_parse(po_.get(), str.c_str()));
    if (!ct ||
        !ascii_iequals(g_mime_content_type_get_media_type(ct.get()), mime.substr(0, slash)) ||
        !ascii_iequals(g_mime_content_type_get_media_subtype(ct.get()), mime.substr(slash + 1))) {
      fail(field, "not a type/subtype");
    }
    return ct;
  }

  GPtr<GMimeObject> attachment_part(const OutgoingAttachment& a, const std::string& field) {
    GPtr<GMimeContentType> ct = parse_content_type(field + ".content_type", a.content_type);
    check_header_text(field + ".filename", a.filename);
    std::string cid;
    if (!a.content_id.empty()) cid = normalize_id(field + ".content_id", a.content_id, false);

    GPtr<GMimeObject> obj;
    if (g_mime_content_type_is_type(ct.get(), "message", "rfc822")) {
      obj = message_part(a.content, field);
    } else if (g_mime_content_type_is_type(ct.get(), "multipart", "*") ||
               g_mime_content_type_is_type(ct.get(), "message", "*")) {
      // A multipart or message body cannot be an opaque base64 leaf (RFC 2046 5.1, 5.2).
      fail(field + ".content_type",
           "multipart and message types other than message/rfc822 "
           "cannot be attached");
    } else {
      GPtr<GMimePart> part(g_mime_part_new());
      set_borrowed_content(part.get(), a.content);
      // Files keep their exact bytes: base64 never touches line endings, which 7bit and
      // quoted-printable would turn into CRLF.
      g_mime_part_set_content_encoding(part.get(), GMIME_CONTENT_ENCODING_BASE64);
      obj.reset(GMIME_OBJECT(part.release()));
    }
    g_mime_object_set_content_type(obj.get(), ct.get());
    g_mime_object_set_disposition(obj.get(), cid.empty() ? "attachment" : "inline");
    // GMime's own setter spells it "Content-Id"; RFC 2045 writes Content-ID.
    if (!cid.empty())
      g_mime_object_set_header(obj.get(), "Content-ID", ("<" + cid + ">").c_str(), nullptr);
    if (!a.filename.empty()) set_filename(obj.get(), a.filename);
    return obj;
  }

  // filename= in Content-Disposition (RFC 2231 when not ASCII) is the standard; name= in
  // Content-Type is what older Outlook reads, and it only understands RFC 2047 there.
  static void set_filename(GMimeObject* obj, const std::string& filename) {
    g_mime_object_set_content_disposition_parameter(obj, "filename", filename.c_str());
    g_mime_object_set_content_type_parameter(obj, "name", filename.c_str());
    GMimeParamList* params =
        g_mime_content_type_get_parameters(g_mime_object_get_content_type(obj));
    GMimeParam* name = g_mime_param_list_get_parameter(params, "name");
    if (name != nullptr && !is_ascii(filename)) {
      g_mime_param_set_encoding_method(name, GMIME_PARAM_ENCODING_METHOD_RFC2047);
    }
  }

  // A forwarded message travels as a message/rfc822 part (base64 is not allowed there), its
  // bodies re-encoded to 7-bit-safe encodings.
  GPtr<GMimeObject> message_part(std::string_view raw, const std::string& field) {
    GPtr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(raw.data(), raw.size()));
    GPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
    g_mime_parser_set_format(parser.get(), GMIME_FORMAT_MESSAGE);
    GPtr<GMimeMessage> inner(g_mime_parser_construct_message(parser.get(), po_.get()));
    if (!inner) fail(field + ".content", "not a parsable RFC 5322 message");
    g_mime_object_encode(GMIME_OBJECT(inner.get()), GMIME_ENCODING_CONSTRAINT_7BIT);
    GPtr<GMimeMessagePart> mp(g_mime_message_part_new_with_message("rfc822", inner.get()));
    return GPtr<GMimeObject>(GMIME_OBJECT(mp.release()));
  }

  static std::string serialize(GMimeObject* top) {
    detail::FormatOptionsPtr fo(g_mime_format_options_new());
    g_mime_format_options_set_newline_format(fo.get(), GMIME_NEWLINE_FORMAT_DOS);
    g_mime_format_options_set_param_encoding_method(fo.get(), GMIME_PARAM_ENCODING_METHOD_RFC2231);
    GPtr<GMimeStream> out(g_mime_stream_mem_new());
    if (g_mime_object_write_to_stream(top, fo.get(), out.get()) < 0) {
      fail("message", "GMime could not write the message");
    }
    GByteArray* arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out.get()));
    std::string result;
    if (arr != nullptr) result.assign(reinterpret_cast<const char*>(arr->data), arr->len);
    // GMime folds what it generates; this catches what it cannot fold (a forwarded message
    // with an over-long header line), which SMTP servers would reject or break.
    std::size_t start = 0;
    while (start < result.size()) {
      std::size_t nl = result.find('\n', start);
      if (nl == std::string::npos) nl = result.size();
      const std::size_t len = nl - start - (nl > start && result[nl - 1] == '\r' ? 1 : 0);
      if (len > kMaxLine) fail("message", "a line longer than 998 octets cannot be folded");
      start = nl + 1;
    }
    return result;
  }

  const OutgoingMessage& msg_;
  // Declared before anything that refers to them, so destroyed after: GMime streams point into
  // borrowed_'s arrays (which point into msg_ and texts_).
  std::deque<std::string> texts_;  // a deque: growing it never moves the strings
  std::vector<detail::BorrowedByteArrayPtr> borrowed_;
  detail::ParserOptionsPtr po_;
};

}  // namespace

bool valid_address(std::string_view address) {
  if (address.empty() || address.size() > kMaxAddress) return false;
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0) return false;
  const std::string_view local = address.substr(0, at);
  if (local.size() > kMaxLocalPart) return false;
  if (!(local.front() == '"' ? quoted_string(local) : dot_atom(local))) return false;
  return domain(address.substr(at + 1));
}

bool reserved_header(std::string_view name) {
  static constexpr std::string_view kReserved[] = {
      "From", "To",         "Cc",          "Bcc",        "Reply-To",    "Subject",
      "Date", "Message-ID", "In-Reply-To", "References", "MIME-Version"};
  for (std::string_view r : kReserved) {
    if (ascii_iequals(name, r)) return true;
  }
  return name.size() >= 8 && ascii_iequals(name.substr(0, 8), "Content-");
}

std::string compose(const OutgoingMessage& msg) {
  initialize();
  Builder b(msg);
  return b.build();
}

}  // namespace el::mime
