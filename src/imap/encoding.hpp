// IMAP string encodings the client needs: modified UTF-7 folder names (RFC 3501 §5.1.3),
// astring quoting, base64 for SASL. Pure functions, no I/O.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace el::imap {

// UTF-8 -> modified UTF-7 ("Entwürfe" -> "Entw&APw-rfe"). nullopt when utf8 is not valid UTF-8.
std::optional<std::string> encode_mutf7(std::string_view utf8);
// Modified UTF-7 -> UTF-8; nullopt when malformed.
std::optional<std::string> decode_mutf7(std::string_view mutf7);

// How an astring goes on the wire: a quoted string when it is short 7-bit text without CR/LF,
// else a literal (the caller sends the literal bytes after the server's continuation).
bool needs_literal(std::string_view s);
// "..." with '\' and '"' escaped. Only for strings where needs_literal() is false.
std::string quote(std::string_view s);

std::string base64_encode(std::string_view data);
// Standard alphabet with '=' padding (SASL challenges); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view b64);

}  // namespace el::imap
