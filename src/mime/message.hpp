// Raw RFC 5322 message -> the JSON the application receives (GMime 3). Thread-safe after
// initialize(); parsing never throws for bad input: problems go to "parse_errors".
#pragma once
#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace el::mime {

struct ParseOptions {
  // Attachment bytes (decoded) included as content_base64 per message; beyond it, metadata only
  // and "truncated": true on the attachments left out.
  std::size_t max_attachment_bytes = 10 * 1024 * 1024;
};

// What IMAP knows about the message; copied into the JSON as is.
struct MessageMeta {
  std::uint32_t uid = 0;
  std::string folder;
  std::vector<std::string> flags;
  std::string internal_date;  // RFC 3339, empty if unknown (JSON null)
};

// Calls g_mime_init once; safe to call from several threads.
void initialize();

// {"message_id","subject","from","sender"?,"reply_to","to","cc","bcc","date","in_reply_to",
//  "references","headers","text","html","attachments","size","uid","folder","flags",
//  "internal_date","parse_errors"?}
boost::json::object to_json(std::string_view raw, const MessageMeta& meta,
                            const ParseOptions& opts = {});

}  // namespace el::mime
