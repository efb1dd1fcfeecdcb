// Names of IMAP error kinds for logs and metrics labels.
#include "imap/error.hpp"

namespace el::imap {

const char* to_string(ErrorKind k) {
  switch (k) {
    case ErrorKind::io:
      return "io";
    case ErrorKind::timeout:
      return "timeout";
    case ErrorKind::tls:
      return "tls";
    case ErrorKind::protocol:
      return "protocol";
    case ErrorKind::auth:
      return "auth";
    case ErrorKind::no:
      return "no";
    case ErrorKind::bad:
      return "bad";
    case ErrorKind::bye:
      return "bye";
  }
  return "unknown";
}

}  // namespace el::imap
