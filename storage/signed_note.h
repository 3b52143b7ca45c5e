// Signed notes and checkpoints, as the transparency-log ecosystem writes them:
//
// - C2SP signed-note (https://c2sp.org/signed-note), with Ed25519 keys in the
//   text forms of Go's golang.org/x/mod/sumdb/note, so Go's and other
//   verifiers read predlog's notes and keys:
//     signer key   "PRIVATE+KEY+<name>+<key id, 8 hex>+<base64(0x01 || 32-byte seed)>"
//     verifier key "<name>+<key id, 8 hex>+<base64(0x01 || 32-byte public key)>"
//     key id       the first 4 bytes (big-endian) of SHA-256(name || "\n" || 0x01 || public key)
//     signed note  text || "\n" || ("— " name " " base64(key id || signature) "\n")+
//   where text ends with "\n" and the Ed25519 signature covers text.
// - C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): a note whose text
//   is origin "\n" tree size (decimal) "\n" base64(root hash) "\n" then any
//   extension lines.
// - predlog's extension lines of a checkpoint (CheckpointExtensions), after
//   the root hash line, in this order; any other extension line is left to
//   whoever wrote it, and checkpoints without them (kept before they existed)
//   are still checkpoints:
//     signed-at := "predlog-signed-at " time
//                  time = RFC 3339 in UTC with exactly six fraction digits,
//                  e.g. "2025-06-01T12:34:56.123456Z": when the checkpoint
//                  was signed, by the signer's clock (whole microseconds)
//     shards    := "predlog-shards" (" " topic "/" count)+
//                  the shards of the signer's log family: shard
//                  "<topic>-<p>" for each p in [0, count); topics distinct,
//                  without "/" or spaces, count a decimal >= 1 without
//                  leading zeros
//
// Ed25519 is OpenSSL's (libcrypto). Signers and verifiers are immutable after
// creation and thread-safe.
#ifndef PREDLOG_STORAGE_SIGNED_NOTE_H_
#define PREDLOG_STORAGE_SIGNED_NOTE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/sha256.h"

struct evp_pkey_st;

namespace predlog::storage {

struct NoteKeyPair {
  std::string signer_key;    // PRIVATE+KEY+... (keep secret)
  std::string verifier_key;  // name+id+key (publish)
};

// A fresh Ed25519 key pair named `name` (OpenSSL's RAND_bytes). INVALID_ARGUMENT
// for a name that is empty or holds '+', a space or a control character.
absl::StatusOr<NoteKeyPair> GenerateNoteKey(absl::string_view name);

class NoteSigner {
 public:
  // Parses a signer key. INVALID_ARGUMENT naming what is wrong (prefix, name,
  // key id not matching the key, a seed not 32 bytes).
  static absl::StatusOr<std::unique_ptr<NoteSigner>> Create(absl::string_view signer_key);
  ~NoteSigner();

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  // The verifier key that checks this signer's notes.
  const std::string& verifier_key() const { return verifier_key_; }

  // The signed note of `text`: INVALID_ARGUMENT unless text is non-empty
  // UTF-8 without control characters other than "\n", ends with "\n" and has
  // no blank line (the note format's rules).
  absl::StatusOr<std::string> Sign(absl::string_view text) const;

 private:
  struct KeyDeleter {
    void operator()(evp_pkey_st* key) const;
  };
  NoteSigner() = default;
  std::string name_;
  uint32_t key_id_ = 0;
  std::string verifier_key_;
  std::unique_ptr<evp_pkey_st, KeyDeleter> key_;
};

class NoteVerifier {
 public:
  // Parses a verifier key. INVALID_ARGUMENT naming what is wrong.
  static absl::StatusOr<std::unique_ptr<NoteVerifier>> Create(absl::string_view verifier_key);
  ~NoteVerifier();

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }

  // The text of `note` when it carries a signature line by this key that
  // verifies over the text. Lines signed by other keys are ignored. Errors
  // (INVALID_ARGUMENT) name what failed: a malformed note or signature line,
  // no signature by this key, or a signature by this key that does not verify.
  absl::StatusOr<std::string> Open(absl::string_view note) const;

 private:
  struct KeyDeleter {
    void operator()(evp_pkey_st* key) const;
  };
  NoteVerifier() = default;
  std::string name_;
  uint32_t key_id_ = 0;
  std::unique_ptr<evp_pkey_st, KeyDeleter> key_;
};

// A signer key kept in a file: one line, the signer key (PRIVATE+KEY+...),
// mode 0600; its verifier key beside it in `path` + ".pub" (world-readable:
// it is what auditors are given), written whenever it is missing or holds
// another key (a failure to write it is logged, not returned: a key on a
// read-only mount still signs).
struct NoteKeyFile {
  std::unique_ptr<NoteSigner> signer;
  bool generated = false;  // this call created the files
};
// Reads the signer key in `path`. When `path` does not exist and
// `generate_name` is not empty, first generates a key named so and writes
// both files (created exclusively, fsynced, with their directory, which is
// created when missing). Errors name the path: NOT_FOUND (missing and
// nothing to generate), PERMISSION_DENIED (unreadable, or readable by group
// or others: "chmod 600" is what to do, as ssh asks of its keys),
// INVALID_ARGUMENT (not a signer key; NoteSigner::Create's reason), INTERNAL
// for other I/O errors.
absl::StatusOr<NoteKeyFile> LoadNoteKeyFile(const std::string& path,
                                            absl::string_view generate_name);

// The text of a signed note (what precedes its signature lines), NOT
// verified: for a note its caller stored itself, or one it verifies next.
// INVALID_ARGUMENT when there is no blank line before signatures.
absl::StatusOr<std::string> UnverifiedNoteText(absl::string_view note);

// A transparency log checkpoint (C2SP tlog-checkpoint).
struct Checkpoint {
  std::string origin;                   // the log's name, e.g. "predlog.example/predlog.events-3"
  uint64_t size = 0;                    // leaves in the tree
  Digest root{};                        // RFC 6962 root of those leaves
  std::vector<std::string> extensions;  // further lines, without "\n"

  // The note text: origin, size, base64(root), extensions, each line ending "\n".
  std::string Text() const;
};

// Parses a checkpoint's text (an opened note). INVALID_ARGUMENT naming the
// line that is wrong: an empty origin, a size that is not a canonical
// decimal, a root that is not base64 of 32 bytes, a missing line.
absl::StatusOr<Checkpoint> ParseCheckpoint(absl::string_view text);

// The first words of predlog's extension lines (the grammar at the top).
inline constexpr absl::string_view kSignedAtExtension = "predlog-signed-at";
inline constexpr absl::string_view kShardsExtension = "predlog-shards";

// What predlog's extension lines of a checkpoint say.
struct CheckpointExtensions {
  // When it was signed; nullopt: no signed-at line.
  std::optional<absl::Time> signed_at;
  // Shards per topic of the signer's log family; nullopt: no shards line.
  std::optional<std::map<std::string, uint32_t>> shards;
};

// The signed-at line of `t`, truncated to whole microseconds (UTC).
std::string SignedAtLine(absl::Time t);
// The shards line of `shards` (topic -> count, in the map's order).
// INVALID_ARGUMENT for no topic, a topic that is empty or holds "/", a space
// or a control character, or a count of 0.
absl::StatusOr<std::string> ShardsLine(const std::map<std::string, uint32_t>& shards);
// Reads predlog's extension lines of `checkpoint` (other lines are skipped).
// INVALID_ARGUMENT naming the line (its number in the note text, from 1) and
// what is wrong: a line of either kind twice, a time that is not the form
// above, a shards line without shards, with a malformed or repeated topic
// or count.
absl::StatusOr<CheckpointExtensions> ParseCheckpointExtensions(const Checkpoint& checkpoint);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SIGNED_NOTE_H_
