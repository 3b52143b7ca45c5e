// Export files and their verification.
//
// JSON lines (file_format "jsonl"):
//   file   := line*
//   line   := json '\n'
//   json   := the TrailLine of the record as services/export/trail_json.h renders it:
//             {"shard":..,"index":"N","event":{..},"leafSha256":..,
//              "prevChainSha256":..,"chainSha256":..,"eventBytes":"<base64>",
//              "appendedAt":"<RFC 3339>"}
//             (protobuf JSON mapping, one line; defaults left out, so index 0
//             has no "index", and a record written before shard format 3 has
//             no "appendedAt"). Hex digests are lower case. "prevChainSha256"
//             is absent exactly when the chain value before the record could
//             not be read: the record right after an unreadable one (see the
//             manifest below).
//
// CSV (file_format "csv", RFC 4180):
//   file   := header row*
//   header := fixed-columns ("," "input." name)* ",extra_inputs,event_bytes_base64" CRLF
//   row    := cell ("," cell)* CRLF
//   cell   := bare | '"' (any char, '"' doubled)* '"'   -- quoted iff it holds , " CR or LF
//   fixed-columns := shard,index,leaf_sha256,prev_chain_sha256,chain_sha256,appended_at,
//             recorded_at,
//             actor,kind,prediction_id,subject_id,served_at,model_name,model_version,
//             artifact_sha256,pipeline_name,pipeline_version,scores,label,trace_id
//   The input columns are the first prediction record's input names in its
//   order (first of each name; none when the export holds no prediction).
//   actor is the event's actor with its claimed_actor beside it as ActorText
//   writes it ("alice", "alice (claimed)", "svc (claimed: alice)"; an event
//   without claimed_actor shows its actor alone, as before claimed_actor
//   existed); kind is the body's proto field name ("prediction_logged"); times are RFC
//   3339 as in JSON ("invalid(seconds=<s> nanos=<n>)" outside protobuf's
//   range); numbers print as in JSON (NaN, Infinity, -Infinity bare); scores
//   are the float scores then the double scores, ';'-joined; an input cell is
//   its value (bytes as base64, int64 in decimal, empty when unset, so an
//   empty string and a missing value look alike: event_bytes tell them apart);
//   extra_inputs is a JSON object of the inputs without a column of their own
//   (a value as the JSON mapping prints it, null when unset), empty when none.
//   Text cells (actor, ids, names, versions, label, trace_id, string and
//   bytes inputs) that start with = + - @ TAB, CR or LF get a leading ' so that a spreadsheet
//   shows them as text instead of evaluating them as a formula (CSV
//   injection); the exact value is in event_bytes.
//   Non-prediction records leave every column from prediction_id to
//   extra_inputs empty. prev_chain_sha256 is empty exactly when the JSON
//   line would have no "prevChainSha256".
//
// Manifest (FILE.manifest.json: the ExportManifest, protobuf's JSON mapping
// printed with whitespace; format_version 2, which added appendedAt and the
// appended_at column; verify still reads version-1 JSON lines):
//   shards     := one per shard with a record or an unreadable range, in file
//                 order: {shard, records, ranges, unreadable}
//   ranges     := the maximal runs [firstIndex, lastIndex] of the shard's
//                 records in the file, in log order, with chain anchors:
//                 prevChainSha256, the chain value before firstIndex (64
//                 zeros at index 0; absent exactly when firstIndex - 1 is in an
//                 unreadable range), and chainSha256, the one after lastIndex.
//   unreadable := [firstIndex, lastIndex] with the shard's error for
//                 firstIndex (reason): records the server could not read
//                 (DATA_LOSS: a corrupt block; a record missing from the log)
//                 when it exported; none of them is in the file. In log order,
//                 disjoint from the ranges and from one another. In an export
//                 of everything, ranges and unreadable ranges leave no gap in a
//                 shard but a loss the shard recorded (its RecordsLost record
//                 starts the range after it). In a subject or model export they
//                 are the records it needed: a match, the record before one
//                 (for its chain value), or, when the shard's index could not
//                 be read and its log was read whole, any record; whether each
//                 matched the filter is not known.
//   checkpoint := (format 3) the shard's signed checkpoint note; each range
//                 then has proofSha256, its range proof against it.
//   edgeBefore, edgeAfter := (format 4; an export of everything, or of the
//                 access trail, with from or to, with a checkpoint) {index, appendedAt, leafSha256,
//                 proofSha256 (inclusion proof), or unreadable}: the record
//                 right before the shard's run (absent when the run starts at
//                 0) and right after it (absent when it ends at the
//                 checkpoint's size); for a shard with no record in the
//                 range they are adjacent, and say where its empty run is.
//   A range without prevChainSha256 is checked from its first record's own
//   chain value on; only the live shard ties that record's leaf to it
//   (CheckAgainstServer).
//   Written in this order: the file as FILE.partial, the manifest, then the
//   file renamed to FILE; a failed export removes FILE.partial, so nothing
//   that verifies is left unless everything was written.
//
// Both formats render each record deterministically from (shard, index,
// digests, event bytes), so the verifier re-renders every line from its
// event_bytes and compares bytes: any change to a line is found and named.
//
// Where each part is implemented (internal pieces: trail_internal.h):
//   JSON lines  the line: AppendTrailLine (trail_json.cc; scalars, strings and
//               times in trail_json_scalars.cc); read back: ReadJsonLine
//               (trail_reader.cc).
//   CSV         the columns: kCsvFixedColumns, kInputPrefix, CsvColumns
//               (trail_internal.h); header and rows, cells and the ' rule:
//               AppendCsvHeader, AppendCsvRow (trail_csv.cc); rows kept until
//               the first prediction names the input columns: TrailWriter
//               (trail_writer.cc); read back: SplitCsv, ReadCsvRow
//               (trail_reader.cc), the header by the Verifier (trail_verify.cc).
//   Records     a file cut into lines and rows: RecordReader (trail_reader.cc).
//   Manifest    written by TrailWriter::Finish, unreadable ranges placed by
//               AcceptUnreadable (trail_writer.cc); checked, with the file
//               against it, by the Verifier (trail_verify.cc: CheckManifest for
//               ranges, anchors, unreadable ranges and gaps); its claims
//               compared with the live shards by CheckAgainstServer.
#include "services/export/trail_export.h"

#include "absl/strings/str_cat.h"

namespace predlog::services {

absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view name) {
  if (name == "jsonl") return ExportFormat::kJsonl;
  if (name == "csv") return ExportFormat::kCsv;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown export format \"", name, "\" (want jsonl or csv)"));
}

absl::string_view ExportFormatName(ExportFormat format) {
  return format == ExportFormat::kJsonl ? "jsonl" : "csv";
}

std::string ActorText(const predlog::v1::AuditEvent& event) {
  const std::string& actor = event.actor();
  const std::string& claim = event.claimed_actor();
  if (claim.empty() || claim == actor) return actor;
  if (actor.empty()) return absl::StrCat(claim, " (claimed)");
  return absl::StrCat(actor, " (claimed: ", claim, ")");
}

}  // namespace predlog::services
