// Fuzz target: the coordinator's tokens file (server/identity.h, TokenAuthenticator::Parse) and
// what a request then presents: an "authorization" value and a claimed client id, plus the
// certificate identity rule. Checked beyond the sanitizers: a token is accepted only if it is one
// the file lists, and a caller may claim an id only if its grant allows it.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_input.h"
#include "server/identity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedkit::fuzz::FuzzInput in(data, size);
  const std::string presented = in.Bytes(64);
  const std::string claimed = in.Bytes(140);
  const std::string uri = in.Bytes(160);
  const std::string common_name = in.Bytes(140);
  const std::string text = in.Rest();
  absl::StatusOr<fedkit::server::TokenAuthenticator> auth =
      fedkit::server::TokenAuthenticator::Parse(text, "tokens");
  (void)fedkit::server::CertificateClientId({uri}, {common_name});
  if (!auth.ok()) return 0;
  absl::StatusOr<const fedkit::server::TokenAuthenticator::Token*> token =
      auth->Authenticate("Bearer " + presented);
  if (!token.ok()) return 0;
  if ((*token)->secret != presented) std::abort();
  const fedkit::server::Caller caller(std::nullopt, *token);
  if (caller.MayClaim(claimed).ok() != (*token)->grant.Allows(claimed)) std::abort();
  return 0;
}
