// Who is calling the coordinator, and which client ids the caller may claim.
//
// A device proves who it is with a client certificate (mutual TLS), a bearer token, or both. Every
// request names a client id (CheckIn, GetModel, GetArtifact, Decline, the upload header, secure
// aggregation); the service refuses a request whose id the caller may not claim with
// PERMISSION_DENIED, so holding a token or a certificate for one device never lets a caller act as
// another.
//
// - Mutual TLS: the client id is the certificate's identity: its first URI subjectAltName of the
//   form `urn:fedkit:client:<client-id>` (deploy/make-certs.sh --client ID writes one), otherwise
//   its subject common name. The caller may claim exactly that id.
// - Bearer tokens: the tokens file (--auth-tokens) maps each token to the ids it may claim:
//       # TOKEN   CLIENT-IDS (comma-separated: an id, a prefix ending in '*', or '*' for any id)
//       3f9a...   phone-000001
//       77c2...   fleet-a-*
//   A token shared by a fleet (a prefix or '*') lets its holder claim many ids; the service caps
//   how many one identity uses at a time (server/caller_quotas.h).
// - With both, both must allow the id. With neither (plaintext or server-only TLS and no tokens),
//   any caller may claim any id: for tests and closed networks only; the binary warns.
//
// Thread safety: the classes here are immutable after construction; every const call is safe from
// any thread.
#ifndef FEDKIT_SERVER_IDENTITY_H_
#define FEDKIT_SERVER_IDENTITY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedkit::server {

// The URI subjectAltName prefix that names a client id in a device certificate.
inline constexpr absl::string_view kClientIdUriPrefix = "urn:fedkit:client:";

// A set of client ids: exact ids, id prefixes, or every id.
class ClientIdGrant {
 public:
  // `patterns`: comma-separated; each an id, a prefix ending in '*' (e.g. "fleet-*"), or "*".
  // INVALID_ARGUMENT naming the bad pattern (empty, or characters a client id cannot have).
  static absl::StatusOr<ClientIdGrant> Parse(absl::string_view patterns);
  static ClientIdGrant Exactly(std::string client_id);

  bool Allows(absl::string_view client_id) const;
  // Whether the grant names more ids than it lists (a prefix or '*').
  bool open_ended() const { return any_ || !prefixes_.empty(); }

 private:
  bool any_ = false;
  std::vector<std::string> ids_;
  std::vector<std::string> prefixes_;
};

// The bearer tokens the coordinator accepts, each with the ids it grants.
class TokenAuthenticator {
 public:
  struct Token {
    std::string secret;
    // A name safe to log and to key quotas by: "token:" + the first 12 hex digits of its SHA-256.
    std::string name;
    ClientIdGrant grant;
  };

  TokenAuthenticator() = default;  // no tokens: none required
  explicit TokenAuthenticator(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  // Parses a tokens file's text (format above; blank lines and lines starting with '#' skipped).
  // INVALID_ARGUMENT naming `source` and the line: a token without ids, a bad id pattern, a token
  // listed twice, or no tokens at all (that would silently disable authentication).
  static absl::StatusOr<TokenAuthenticator> Parse(absl::string_view text, absl::string_view source);
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);
  // One token granting `patterns` (tests).
  static Token MakeToken(std::string secret, absl::string_view patterns);

  bool enabled() const { return !tokens_.empty(); }
  // The token presented in an "authorization" metadata value ("Bearer <token>"; nullopt: none was
  // sent). UNAUTHENTICATED when tokens are required and it is missing, malformed or unknown; the
  // message never echoes what was presented. Comparison is constant-time per token.
  absl::StatusOr<const Token*> Authenticate(std::optional<absl::string_view> authorization) const;

 private:
  std::vector<Token> tokens_;
};

// An authenticated caller of one RPC.
class Caller {
 public:
  // `certificate_id`: the id proven by a client certificate; `token`: the token presented (owned by
  // the TokenAuthenticator, which must outlive the Caller). Either may be absent.
  Caller(std::optional<std::string> certificate_id, const TokenAuthenticator::Token* token)
      : certificate_id_(std::move(certificate_id)), token_(token) {}

  // OK when the caller may claim `client_id`; PERMISSION_DENIED otherwise, naming the id claimed
  // and (for a certificate) the one proven, never the token.
  absl::Status MayClaim(absl::string_view client_id) const;
  // The key for per-caller quotas and logs: "cert:<id>", the token's name, or "anonymous".
  std::string identity() const;
  // Whether this caller may use many ids (an open-ended token, or no identity at all).
  bool many_ids() const;

 private:
  std::optional<std::string> certificate_id_;
  const TokenAuthenticator::Token* token_;
};

// The client id a verified client certificate proves, from the peer properties gRPC reports:
// its URI subjectAltNames and its common name. nullopt when it names none that is a valid id.
std::optional<std::string> CertificateClientId(const std::vector<std::string>& uri_sans,
                                               const std::vector<std::string>& common_names);

}  // namespace fedkit::server

#endif  // FEDKIT_SERVER_IDENTITY_H_
