// Helpers shared by the http/ sources and their tests; not part of the module's public surface.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/metrics.hpp"

namespace el::http::internal {

// Mailbox ids: 1-128 of [A-Za-z0-9._-], and not "." or ".." (those cannot sit in a URL path:
// clients normalise them away before the request is sent).
bool valid_mailbox_id(std::string_view id);

// True when presented equals one of tokens. Compares SHA-256 digests in constant time and checks
// every token, so timing reveals neither which token nor how much of it matched.
bool token_matches(std::string_view presented, const std::vector<std::string>& tokens);

// Prometheus text format 0.0.4 for every counter and histogram of r, with HELP/TYPE lines.
std::string render_metrics(const metrics::Registry& r);

// s cut to at most max bytes without splitting a UTF-8 sequence, so it stays valid JSON text.
std::string truncate_utf8(std::string_view s, std::size_t max);

}  // namespace el::http::internal
