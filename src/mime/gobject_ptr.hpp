// Owning smart pointers for the GLib/GMime handles el::mime uses, so every exit path frees them.
#pragma once
#include <gmime/gmime.h>

#include <memory>

namespace el::mime::detail {

struct GObjectUnref {
  void operator()(void* p) const noexcept {
    if (p != nullptr) g_object_unref(p);
  }
};
// For any GObject-derived type (GMimeMessage, GMimeStream, GMimeParser, ...).
template <typename T>
using GPtr = std::unique_ptr<T, GObjectUnref>;

struct GFree {
  void operator()(void* p) const noexcept { g_free(p); }
};
using GCharPtr = std::unique_ptr<char, GFree>;

struct ParserOptionsFree {
  void operator()(GMimeParserOptions* p) const noexcept {
    if (p != nullptr) g_mime_parser_options_free(p);
  }
};
using ParserOptionsPtr = std::unique_ptr<GMimeParserOptions, ParserOptionsFree>;

struct FormatOptionsFree {
  void operator()(GMimeFormatOptions* p) const noexcept {
    if (p != nullptr) g_mime_format_options_free(p);
  }
};
using FormatOptionsPtr = std::unique_ptr<GMimeFormatOptions, FormatOptionsFree>;

struct ReferencesFree {
  void operator()(GMimeReferences* p) const noexcept {
    if (p != nullptr) g_mime_references_free(p);
  }
};
using ReferencesPtr = std::unique_ptr<GMimeReferences, ReferencesFree>;

// A GByteArray whose bytes belong to someone else (the caller's string_view): frees only the
// wrapper, never the data.
struct BorrowedByteArrayFree {
  void operator()(GByteArray* p) const noexcept {
    if (p != nullptr) g_byte_array_free(p, FALSE);
  }
};
using BorrowedByteArrayPtr = std::unique_ptr<GByteArray, BorrowedByteArrayFree>;

}  // namespace el::mime::detail
