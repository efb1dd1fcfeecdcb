// AES-256-GCM sealing of stored credentials (OpenSSL EVP).
#include "core/secret_box.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <stdexcept>

namespace el::core {

namespace {

constexpr std::string_view kPrefix = "enc:v1:";
constexpr int kNonce = 12;
constexpr int kTag = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

std::optional<std::string> open_with(const SecretBox::Key& key, std::string_view blob,
                                     std::string_view aad) {
  if (blob.size() < static_cast<std::size_t>(kNonce + kTag)) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(blob.data());
  const int ct_len = static_cast<int>(blob.size()) - kNonce - kTag;
  Ctx ctx(EVP_CIPHER_CTX_new());
  std::string out(static_cast<std::size_t>(ct_len), '\0');
  int len = 0;
  int fin = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonce, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), p) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, p + kNonce,
                        ct_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag,
                          const_cast<unsigned char*>(p + kNonce + ct_len)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &fin) != 1)
    return std::nullopt;
  out.resize(static_cast<std::size_t>(len + fin));
  return out;
}

SecretBox::Key parse_key(std::string_view b64, const char* which) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != 32)
    throw std::invalid_argument(
        std::string(which) + " must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)");
  SecretBox::Key k;
  std::copy(raw->begin(), raw->end(), k.begin());
  return k;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes: drop them.
  std::size_t len = static_cast<std::size_t>(n);
  if (!text.empty() && text.back() == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

SecretBox SecretBox::from_base64(std::string_view key, std::string_view old_key) {
  std::optional<Key> old;
  if (!old_key.empty()) old = parse_key(old_key, "EL_SECRET_KEY_OLD");
  return SecretBox(parse_key(key, "EL_SECRET_KEY"), old);
}

bool SecretBox::is_sealed(std::string_view text) {
  return text.substr(0, kPrefix.size()) == kPrefix;
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view associated) const {
  std::string blob(static_cast<std::size_t>(kNonce) + plaintext.size() + kTag, '\0');
  auto* p = reinterpret_cast<unsigned char*>(blob.data());
  if (RAND_bytes(p, kNonce) != 1) throw std::runtime_error("RAND_bytes failed");
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int fin = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonce, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), p) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(associated.data()),
                        static_cast<int>(associated.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), p + kNonce, &len,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), p + kNonce + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, p + kNonce + plaintext.size()) !=
          1)
    throw std::runtime_error("AES-256-GCM encryption failed");
  return std::string(kPrefix) + base64_encode(blob);
}

std::optional<std::string> SecretBox::open(std::string_view sealed,
                                           std::string_view associated) const {
  if (!is_sealed(sealed)) return std::nullopt;
  auto blob = base64_decode(sealed.substr(kPrefix.size()));
  if (!blob) return std::nullopt;
  if (auto v = open_with(key_, *blob, associated)) return v;
  if (old_) return open_with(*old_, *blob, associated);
  return std::nullopt;
}

}  // namespace el::core
