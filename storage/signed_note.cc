#include "storage/signed_note.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "storage/errno_status.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::storage {
namespace {

constexpr uint8_t kEd25519 = 0x01;  // the note format's algorithm byte
constexpr absl::string_view kSignerPrefix = "PRIVATE+KEY+";
constexpr absl::string_view kSignaturePrefix = "\xe2\x80\x94 ";  // U+2014 EM DASH, space
constexpr size_t kMaxNoteBytes = 1 << 20;
constexpr size_t kMaxSignatures = 100;

bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '+' || u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

// Valid UTF-8 (no overlong forms or surrogates), as Go's utf8.Valid.
bool ValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n;
  }
  return true;
}

uint32_t KeyId(absl::string_view name, absl::string_view alg_and_key) {
  const Digest d = Sha256({name, "\n", alg_and_key});
  return static_cast<uint32_t>(d[0]) << 24 | static_cast<uint32_t>(d[1]) << 16 |
         static_cast<uint32_t>(d[2]) << 8 | d[3];
}

// name+hexid+base64(alg || key), the shape of both key forms after the
// signer's prefix. Checks the id against the key.
struct ParsedKey {
  std::string name;
  uint32_t id = 0;
  std::string key;  // without the algorithm byte
};

absl::StatusOr<ParsedKey> ParseKey(absl::string_view text, absl::string_view what) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('+', 2));
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": want NAME+ID+KEY"));
  }
  ParsedKey key;
  key.name = std::string(parts[0]);
  if (!ValidName(key.name)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": bad key name"));
  }
  if (parts[1].size() != 8 || !absl::SimpleHexAtoi(parts[1], &key.id)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": key id is not 8 hex digits"));
  }
  std::string alg_and_key;
  if (!absl::Base64Unescape(parts[2], &alg_and_key) || alg_and_key.size() != 33 ||
      static_cast<uint8_t>(alg_and_key[0]) != kEd25519) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": key is not base64 of an Ed25519 key (0x01 and 32 bytes)"));
  }
  key.key = alg_and_key.substr(1);
  return key;
}

std::string FormatKeyId(uint32_t id) { return absl::StrFormat("%08x", id); }

std::string VerifierKeyOf(absl::string_view name, absl::string_view public_key) {
  const std::string alg_and_key = absl::StrCat(std::string(1, char(kEd25519)), public_key);
  return absl::StrCat(name, "+", FormatKeyId(KeyId(name, alg_and_key)), "+",
                      absl::Base64Escape(alg_and_key));
}

absl::StatusOr<std::string> PublicKeyOf(evp_pkey_st* key) {
  std::string public_key(32, '\0');
  size_t length = public_key.size();
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(public_key.data()),
                                  &length) != 1 ||
      length != 32) {
    return absl::InternalError("OpenSSL could not derive the Ed25519 public key");
  }
  return public_key;
}

absl::Status CheckNoteText(absl::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return absl::InvalidArgumentError("note text must be non-empty and end with a newline");
  }
  if (text.size() > kMaxNoteBytes) {
    return absl::InvalidArgumentError(absl::StrCat("note text is over ", kMaxNoteBytes, " bytes"));
  }
  if (!ValidUtf8(text)) return absl::InvalidArgumentError("note text is not UTF-8");
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("note text has a control character at byte ", i));
    }
    if (c == '\n' && (i == 0 || text[i - 1] == '\n')) {
      return absl::InvalidArgumentError("note text has a blank line");
    }
  }
  return absl::OkStatus();
}

}  // namespace

void NoteSigner::KeyDeleter::operator()(evp_pkey_st* key) const { EVP_PKEY_free(key); }
void NoteVerifier::KeyDeleter::operator()(evp_pkey_st* key) const { EVP_PKEY_free(key); }
NoteSigner::~NoteSigner() = default;
NoteVerifier::~NoteVerifier() = default;

absl::StatusOr<NoteKeyPair> GenerateNoteKey(absl::string_view name) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("key name \"", absl::CHexEscape(name),
                     "\" must be non-empty without '+', spaces or control characters"));
  }
  std::string seed(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(seed.data()), 32) != 1) {
    return absl::InternalError("OpenSSL RAND_bytes failed");
  }
  std::unique_ptr<evp_pkey_st, void (*)(evp_pkey_st*)> key(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                   reinterpret_cast<const unsigned char*>(seed.data()), 32),
      EVP_PKEY_free);
  if (key == nullptr) return absl::InternalError("OpenSSL could not make an Ed25519 key");
  ASSIGN_OR_RETURN(std::string public_key, PublicKeyOf(key.get()));
  NoteKeyPair pair;
  pair.verifier_key = VerifierKeyOf(name, public_key);
  const std::string alg_and_key = absl::StrCat(std::string(1, char(kEd25519)), public_key);
  pair.signer_key =
      absl::StrCat(kSignerPrefix, name, "+", FormatKeyId(KeyId(name, alg_and_key)), "+",
                   absl::Base64Escape(absl::StrCat(std::string(1, char(kEd25519)), seed)));
  return pair;
}

absl::StatusOr<std::unique_ptr<NoteSigner>> NoteSigner::Create(absl::string_view signer_key) {
  if (!absl::ConsumePrefix(&signer_key, kSignerPrefix)) {
    return absl::InvalidArgumentError("signer key does not start with PRIVATE+KEY+");
  }
  ASSIGN_OR_RETURN(ParsedKey parsed, ParseKey(signer_key, "signer key"));
  std::unique_ptr<NoteSigner> signer(new NoteSigner());
  signer->key_.reset(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(parsed.key.data()), 32));
  if (signer->key_ == nullptr) {
    return absl::InvalidArgumentError("signer key: OpenSSL refused the Ed25519 seed");
  }
  ASSIGN_OR_RETURN(std::string public_key, PublicKeyOf(signer->key_.get()));
  const uint32_t id = KeyId(parsed.name, absl::StrCat(std::string(1, char(kEd25519)), public_key));
  if (id != parsed.id) {
    return absl::InvalidArgumentError(absl::StrCat("signer key: key id ", FormatKeyId(parsed.id),
                                                   " does not match its key (", FormatKeyId(id),
                                                   ")"));
  }
  signer->name_ = parsed.name;
  signer->key_id_ = id;
  signer->verifier_key_ = VerifierKeyOf(parsed.name, public_key);
  return signer;
}

absl::StatusOr<std::string> NoteSigner::Sign(absl::string_view text) const {
  RETURN_IF_ERROR(CheckNoteText(text));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char signature[64];
  size_t length = sizeof(signature);
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), signature, &length,
                     reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 1 ||
      length != sizeof(signature)) {
    return absl::InternalError("OpenSSL Ed25519 signing failed");
  }
  std::string id_and_signature;
  AppendU32(&id_and_signature, key_id_);
  id_and_signature.append(reinterpret_cast<const char*>(signature), length);
  return absl::StrCat(text, "\n", kSignaturePrefix, name_, " ",
                      absl::Base64Escape(id_and_signature), "\n");
}

absl::StatusOr<std::unique_ptr<NoteVerifier>> NoteVerifier::Create(absl::string_view verifier_key) {
  ASSIGN_OR_RETURN(ParsedKey parsed, ParseKey(verifier_key, "verifier key"));
  const uint32_t id = KeyId(parsed.name, absl::StrCat(std::string(1, char(kEd25519)), parsed.key));
  if (id != parsed.id) {
    return absl::InvalidArgumentError(absl::StrCat("verifier key: key id ", FormatKeyId(parsed.id),
                                                   " does not match its key (", FormatKeyId(id),
                                                   ")"));
  }
  std::unique_ptr<NoteVerifier> verifier(new NoteVerifier());
  verifier->key_.reset(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(parsed.key.data()), 32));
  if (verifier->key_ == nullptr) {
    return absl::InvalidArgumentError("verifier key: OpenSSL refused the Ed25519 public key");
  }
  verifier->name_ = parsed.name;
  verifier->key_id_ = id;
  return verifier;
}

namespace {

// Creates `path` (which must not exist) holding `contents`, with `mode`, fsynced.
absl::Status WriteNewFile(const std::string& path, absl::string_view contents, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, "create", path);
  absl::string_view rest = contents;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "write", path);
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "sync", path);
  }
  if (::close(fd) != 0) return ErrnoStatus(errno, "close", path);
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus(err, "sync", dir);
}

}  // namespace

absl::StatusOr<NoteKeyFile> LoadNoteKeyFile(const std::string& path,
                                            absl::string_view generate_name) {
  NoteKeyFile out;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT || generate_name.empty()) return ErrnoStatus(errno, "signing key", path);
    ASSIGN_OR_RETURN(NoteKeyPair pair, GenerateNoteKey(generate_name));
    const std::string dir = std::filesystem::path(path).parent_path().string();
    if (!dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) return ErrnoStatus(ec.value(), "create directory", dir);
    }
    RETURN_IF_ERROR(WriteNewFile(path, pair.signer_key + "\n", 0600));
    RETURN_IF_ERROR(SyncDir(dir.empty() ? "." : dir));
    out.generated = true;
  } else if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("signing key %s is readable by others (mode %04o): chmod 600 %s", path,
                        st.st_mode & 07777, path));
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return ErrnoStatus(errno, "read signing key", path);
  std::string key = text.str();
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  absl::StatusOr<std::unique_ptr<NoteSigner>> signer = NoteSigner::Create(key);
  if (!signer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("signing key ", path, ": ", signer.status().message()));
  }
  out.signer = *std::move(signer);
  // The verifier key beside it, written when missing (also after a crash
  // right after the key was) or not this key's (the key file was replaced):
  // what auditors are given must never be another key.
  const std::string pub = path + ".pub";
  const std::string want = out.signer->verifier_key() + "\n";
  std::ifstream pub_in(pub);
  std::stringstream have;
  have << pub_in.rdbuf();
  if (!pub_in || have.str() != want) {
    // A key on a read-only mount (a secret) still signs: the .pub is a
    // convenience, and the verifier key is logged instead.
    const std::string tmp = pub + ".tmp";
    ::unlink(tmp.c_str());
    absl::Status written = WriteNewFile(tmp, want, 0644);
    if (written.ok() && ::rename(tmp.c_str(), pub.c_str()) != 0) {
      written = ErrnoStatus(errno, "rename", tmp);
    }
    const std::string dir = std::filesystem::path(pub).parent_path().string();
    if (written.ok()) written = SyncDir(dir.empty() ? "." : dir);
    if (!written.ok()) {
      PREDLOG_LOG(WARNING) << "signing key " << path << ": cannot write its verifier key to " << pub
                           << " (" << written << "); it is " << out.signer->verifier_key();
    }
  }
  return out;
}

absl::StatusOr<std::string> UnverifiedNoteText(absl::string_view note) {
  const size_t split = note.rfind("\n\n");
  if (split == absl::string_view::npos) {
    return absl::InvalidArgumentError("malformed note: no blank line before the signatures");
  }
  return std::string(note.substr(0, split + 1));
}

absl::StatusOr<std::string> NoteVerifier::Open(absl::string_view note) const {
  if (note.size() > kMaxNoteBytes + 64 * kMaxSignatures) {
    return absl::InvalidArgumentError("malformed note: too large");
  }
  if (!ValidUtf8(note)) return absl::InvalidArgumentError("malformed note: not UTF-8");
  const size_t split = note.rfind("\n\n");
  if (split == absl::string_view::npos) {
    return absl::InvalidArgumentError("malformed note: no blank line before the signatures");
  }
  const absl::string_view text = note.substr(0, split + 1);
  absl::string_view signatures = note.substr(split + 2);
  if (signatures.empty() || signatures.back() != '\n') {
    return absl::InvalidArgumentError("malformed note: signatures must end with a newline");
  }
  RETURN_IF_ERROR(CheckNoteText(text));
  size_t lines = 0;
  bool by_this_key = false;
  while (!signatures.empty()) {
    if (++lines > kMaxSignatures) {
      return absl::InvalidArgumentError("malformed note: over 100 signature lines");
    }
    const size_t end = signatures.find('\n');
    absl::string_view line = signatures.substr(0, end);
    signatures.remove_prefix(end + 1);
    if (!absl::ConsumePrefix(&line, kSignaturePrefix)) {
      return absl::InvalidArgumentError(absl::StrCat("malformed note: signature line ", lines,
                                                     " does not start with an em dash"));
    }
    const size_t space = line.find(' ');
    std::string decoded;
    // Only the canonical base64 (padded) of a signature is accepted, so a
    // signature line has one spelling.
    if (space == absl::string_view::npos || !ValidName(line.substr(0, space)) ||
        !absl::Base64Unescape(line.substr(space + 1), &decoded) || decoded.size() < 5 ||
        absl::Base64Escape(decoded) != line.substr(space + 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed note: signature line ", lines, " is not NAME BASE64"));
    }
    absl::string_view id_bytes = decoded;
    uint32_t id = 0;
    ReadU32(&id_bytes, &id);
    if (line.substr(0, space) != name_ || id != key_id_) continue;
    by_this_key = true;
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (ctx == nullptr ||
        EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
      return absl::InternalError("OpenSSL Ed25519 verification could not start");
    }
    if (EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(id_bytes.data()),
                         id_bytes.size(), reinterpret_cast<const unsigned char*>(text.data()),
                         text.size()) == 1) {
      return std::string(text);
    }
  }
  if (by_this_key) {
    return absl::InvalidArgumentError(
        absl::StrCat("the signature by ", name_, "+", FormatKeyId(key_id_), " does not verify"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the note has no signature by ", name_, "+", FormatKeyId(key_id_)));
}

std::string Checkpoint::Text() const {
  std::string text =
      absl::StrCat(origin, "\n", size, "\n", absl::Base64Escape(AsBytes(root)), "\n");
  for (const std::string& line : extensions) absl::StrAppend(&text, line, "\n");
  return text;
}

absl::StatusOr<Checkpoint> ParseCheckpoint(absl::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return absl::InvalidArgumentError("checkpoint: text must end with a newline");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(text.substr(0, text.size() - 1), '\n');
  if (lines.size() < 3) {
    return absl::InvalidArgumentError("checkpoint: want origin, tree size and root hash lines");
  }
  Checkpoint c;
  c.origin = std::string(lines[0]);
  if (c.origin.empty()) return absl::InvalidArgumentError("checkpoint: line 1 (origin) is empty");
  const absl::string_view size = lines[1];
  if (size.empty() || (size.size() > 1 && size[0] == '0') ||
      !std::all_of(size.begin(), size.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(size, &c.size)) {
    return absl::InvalidArgumentError(
        "checkpoint: line 2 (tree size) is not a decimal without leading zeros");
  }
  std::string root;
  if (!absl::Base64Unescape(lines[2], &root) || root.size() != c.root.size() ||
      absl::Base64Escape(root) != lines[2]) {
    return absl::InvalidArgumentError("checkpoint: line 3 (root hash) is not base64 of 32 bytes");
  }
  std::copy(root.begin(), root.end(), c.root.begin());
  for (size_t i = 3; i < lines.size(); ++i) c.extensions.emplace_back(lines[i]);
  return c;
}

namespace {

constexpr char kSignedAtFormat[] = "%Y-%m-%dT%H:%M:%E6SZ";

bool ValidTopic(absl::string_view topic) {
  if (topic.empty()) return false;
  for (char c : topic) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/' || u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

std::string SignedAtLine(absl::Time t) {
  const absl::Time micros = absl::FromUnixMicros(absl::ToUnixMicros(t));
  return absl::StrCat(kSignedAtExtension, " ",
                      absl::FormatTime(kSignedAtFormat, micros, absl::UTCTimeZone()));
}

absl::StatusOr<std::string> ShardsLine(const std::map<std::string, uint32_t>& shards) {
  if (shards.empty()) return absl::InvalidArgumentError("a shards line needs at least one topic");
  std::string line(kShardsExtension);
  for (const auto& [topic, count] : shards) {
    if (!ValidTopic(topic)) {
      return absl::InvalidArgumentError(
          absl::StrCat("topic \"", absl::CHexEscape(topic),
                       "\" is empty or holds '/', a space or a control "
                       "character"));
    }
    if (count == 0) {
      return absl::InvalidArgumentError(absl::StrCat("topic ", topic, " has 0 shards"));
    }
    absl::StrAppend(&line, " ", topic, "/", count);
  }
  return line;
}

absl::StatusOr<CheckpointExtensions> ParseCheckpointExtensions(const Checkpoint& checkpoint) {
  CheckpointExtensions out;
  for (size_t i = 0; i < checkpoint.extensions.size(); ++i) {
    absl::string_view line = checkpoint.extensions[i];
    // Lines 1 to 3 are origin, size and root.
    const std::string where = absl::StrCat("checkpoint: line ", i + 4, " (", line.substr(0, 80),
                                           line.size() > 80 ? "…" : "", ")");
    const absl::string_view word = line.substr(0, line.find(' '));
    if (word == kSignedAtExtension) {
      if (out.signed_at.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": a second ", word, " line"));
      }
      const absl::string_view value = line.substr(std::min(line.size(), word.size() + 1));
      absl::Time t;
      std::string error;
      if (!absl::ParseTime(kSignedAtFormat, std::string(value), absl::UTCTimeZone(), &t, &error) ||
          SignedAtLine(t) != line) {
        return absl::InvalidArgumentError(
            absl::StrCat(where,
                         ": the signing time is not RFC 3339 UTC with six fraction digits "
                         "(2025-06-01T12:34:56.123456Z)"));
      }
      out.signed_at = t;
    } else if (word == kShardsExtension) {
      if (out.shards.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": a second ", word, " line"));
      }
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
      if (parts.size() < 2) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": it names no shards"));
      }
      std::map<std::string, uint32_t>& shards = out.shards.emplace();
      for (size_t k = 1; k < parts.size(); ++k) {
        const absl::string_view part = parts[k];
        const size_t slash = part.rfind('/');
        const absl::string_view topic =
            slash == absl::string_view::npos ? part : part.substr(0, slash);
        const absl::string_view count =
            slash == absl::string_view::npos ? absl::string_view() : part.substr(slash + 1);
        uint32_t n = 0;
        if (!ValidTopic(topic) || count.empty() || count[0] == '0' ||
            !std::all_of(count.begin(), count.end(), absl::ascii_isdigit) ||
            !absl::SimpleAtoi(count, &n)) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": \"", part, "\" is not TOPIC/COUNT (a count >= 1)"));
        }
        if (!shards.emplace(std::string(topic), n).second) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": topic ", topic, " is named twice"));
        }
      }
    }
  }
  return out;
}

}  // namespace predlog::storage
