// Encryption of stored credentials: AES-256-GCM with a random 96-bit nonce per value and the
// owner's id as associated data (a sealed password cannot be moved to another mailbox).
// Sealed text: "enc:v1:" + base64(nonce || ciphertext || tag). Thread-safe (immutable).
#pragma once
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace el::core {

class SecretBox {
 public:
  using Key = std::array<unsigned char, 32>;
  // key: seals and opens; old_key (rotation): only opens. Throws std::invalid_argument unless
  // each given key is base64 of exactly 32 bytes (the message names which one).
  static SecretBox from_base64(std::string_view key, std::string_view old_key = {});

  std::string seal(std::string_view plaintext, std::string_view associated) const;
  // nullopt when the text is not sealed with one of our keys for this associated data, or was
  // altered.
  std::optional<std::string> open(std::string_view sealed, std::string_view associated) const;
  static bool is_sealed(std::string_view text);

 private:
  SecretBox(Key key, std::optional<Key> old) : key_(key), old_(old) {}
  Key key_;
  std::optional<Key> old_;
};

// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace el::core
