#include "server/identity.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/round_coordinator.h"

namespace fedkit::server {

absl::StatusOr<ClientIdGrant> ClientIdGrant::Parse(absl::string_view patterns) {
  ClientIdGrant grant;
  for (absl::string_view raw : absl::StrSplit(patterns, ',')) {
    const absl::string_view pattern = absl::StripAsciiWhitespace(raw);
    if (pattern == "*") {
      grant.any_ = true;
      continue;
    }
    const bool prefix = absl::EndsWith(pattern, "*");
    const absl::string_view id = prefix ? pattern.substr(0, pattern.size() - 1) : pattern;
    if (absl::Status valid = ValidateClientId(id); !valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("client id pattern \"", absl::CEscape(pattern),
                       "\" is neither '*', a client id, nor a client id prefix followed by '*': ",
                       valid.message()));
    }
    (prefix ? grant.prefixes_ : grant.ids_).emplace_back(id);
  }
  return grant;
}

ClientIdGrant ClientIdGrant::Exactly(std::string client_id) {
  ClientIdGrant grant;
  grant.ids_.push_back(std::move(client_id));
  return grant;
}

bool ClientIdGrant::Allows(absl::string_view client_id) const {
  if (any_) return true;
  for (const std::string& id : ids_) {
    if (id == client_id) return true;
  }
  for (const std::string& prefix : prefixes_) {
    if (absl::StartsWith(client_id, prefix)) return true;
  }
  return false;
}

TokenAuthenticator::Token TokenAuthenticator::MakeToken(std::string secret,
                                                        absl::string_view patterns) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  const std::string hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  absl::StatusOr<ClientIdGrant> grant = ClientIdGrant::Parse(patterns);
  return Token{.secret = std::move(secret),
               .name = absl::StrCat("token:", hex.substr(0, 12)),
               .grant = grant.ok() ? *std::move(grant) : ClientIdGrant()};
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::Parse(absl::string_view text,
                                                             absl::string_view source) {
  std::vector<Token> tokens;
  absl::flat_hash_set<std::string> seen;
  int line_number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_number;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    const auto where = [&] { return absl::StrCat(source, ":", line_number, ": "); };
    const size_t split = line.find_first_of(" \t");
    if (split == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          where(),
          "a token needs the client ids it may claim after it, e.g. \"TOKEN phone-000001\", "
          "\"TOKEN fleet-*\" or \"TOKEN *\" for any id"));
    }
    std::string secret(line.substr(0, split));
    const absl::string_view patterns = absl::StripAsciiWhitespace(line.substr(split));
    absl::StatusOr<ClientIdGrant> grant = ClientIdGrant::Parse(patterns);
    if (!grant.ok())
      return absl::InvalidArgumentError(absl::StrCat(where(), grant.status().message()));
    if (!seen.insert(secret).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "this token is listed twice (the token is not shown)"));
    }
    Token token = MakeToken(std::move(secret), "*");
    token.grant = *std::move(grant);
    tokens.push_back(std::move(token));
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", source, " holds no tokens"));
  }
  return TokenAuthenticator(std::move(tokens));
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<const TokenAuthenticator::Token*> TokenAuthenticator::Authenticate(
    std::optional<absl::string_view> authorization) const {
  if (tokens_.empty()) return nullptr;
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError("missing authorization metadata");
  }
  constexpr absl::string_view kPrefix = "Bearer ";
  if (!absl::StartsWith(*authorization, kPrefix)) {
    return absl::UnauthenticatedError("authorization is not a bearer token");
  }
  const absl::string_view presented = authorization->substr(kPrefix.size());
  const Token* match = nullptr;
  for (const Token& token : tokens_) {
    // Constant-time comparison, so response timing does not reveal a token's prefix.
    if (token.secret.size() == presented.size() &&
        CRYPTO_memcmp(token.secret.data(), presented.data(), presented.size()) == 0) {
      match = &token;
    }
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  return match;
}

absl::Status Caller::MayClaim(absl::string_view client_id) const {
  if (certificate_id_.has_value() && *certificate_id_ != client_id) {
    return absl::PermissionDeniedError(absl::StrCat("this client certificate is for client id \"",
                                                    *certificate_id_, "\"; it may not act as \"",
                                                    absl::CEscape(client_id), "\""));
  }
  if (token_ != nullptr && !token_->grant.Allows(client_id)) {
    return absl::PermissionDeniedError(absl::StrCat("the bearer token (", token_->name,
                                                    ") does not grant client id \"",
                                                    absl::CEscape(client_id), "\""));
  }
  return absl::OkStatus();
}

std::string Caller::identity() const {
  if (certificate_id_.has_value()) return absl::StrCat("cert:", *certificate_id_);
  if (token_ != nullptr) return token_->name;
  return "anonymous";
}

bool Caller::many_ids() const {
  if (certificate_id_.has_value()) return false;
  return token_ == nullptr || token_->grant.open_ended();
}

std::optional<std::string> CertificateClientId(const std::vector<std::string>& uri_sans,
                                               const std::vector<std::string>& common_names) {
  for (const std::string& uri : uri_sans) {
    if (!absl::StartsWith(uri, kClientIdUriPrefix)) continue;
    std::string id = uri.substr(kClientIdUriPrefix.size());
    if (ValidateClientId(id).ok()) return id;
  }
  for (const std::string& name : common_names) {
    if (ValidateClientId(name).ok()) return name;
  }
  return std::nullopt;
}

}  // namespace fedkit::server
