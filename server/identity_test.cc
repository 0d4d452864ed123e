// Tokens files, client id grants and certificate identities (server/identity.h).
#include "server/identity.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedkit::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ClientIdGrantTest, IdsPrefixesAndAny) {
  absl::StatusOr<ClientIdGrant> grant = ClientIdGrant::Parse("phone-1, fleet-a-*");
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_TRUE(grant->Allows("phone-1"));
  EXPECT_FALSE(grant->Allows("phone-10"));  // an id is exact
  EXPECT_TRUE(grant->Allows("fleet-a-0001"));
  EXPECT_FALSE(grant->Allows("fleet-b-0001"));
  EXPECT_TRUE(grant->open_ended());
  EXPECT_FALSE(ClientIdGrant::Parse("phone-1")->open_ended());
  EXPECT_TRUE(ClientIdGrant::Parse("*")->Allows("anything"));
  EXPECT_FALSE(ClientIdGrant::Parse("bad id").ok());
  EXPECT_FALSE(ClientIdGrant::Parse("").ok());
  EXPECT_FALSE(ClientIdGrant::Parse("a,,b").ok());
}

TEST(TokenAuthenticatorTest, ParsesTokensWithTheirIds) {
  absl::StatusOr<TokenAuthenticator> auth = TokenAuthenticator::Parse(
      "# comment\n\n  t-one  phone-1\nt-fleet\tfleet-*,phone-9\n", "tokens.txt");
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::StatusOr<const TokenAuthenticator::Token*> one = auth->Authenticate("Bearer t-one");
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE((*one)->grant.Allows("phone-1"));
  EXPECT_FALSE((*one)->grant.Allows("phone-2"));
  EXPECT_THAT((*one)->name, Not(HasSubstr("t-one")));  // the name never shows the secret
  absl::StatusOr<const TokenAuthenticator::Token*> fleet = auth->Authenticate("Bearer t-fleet");
  ASSERT_TRUE(fleet.ok());
  EXPECT_TRUE((*fleet)->grant.Allows("fleet-7"));
  EXPECT_TRUE((*fleet)->grant.Allows("phone-9"));
  EXPECT_NE((*one)->name, (*fleet)->name);
}

TEST(TokenAuthenticatorTest, BadFilesNameTheFileAndLine) {
  absl::StatusOr<TokenAuthenticator> bare =
      TokenAuthenticator::Parse("# x\nlonely-token\n", "t.txt");
  ASSERT_FALSE(bare.ok());
  EXPECT_THAT(bare.status().message(), HasSubstr("t.txt:2:"));
  EXPECT_THAT(bare.status().message(), Not(HasSubstr("lonely-token")));
  EXPECT_THAT(TokenAuthenticator::Parse("a phone/1\n", "t.txt").status().message(),
              HasSubstr("t.txt:1:"));
  EXPECT_THAT(TokenAuthenticator::Parse("a x\nb y\na z\n", "t.txt").status().message(),
              HasSubstr("t.txt:3: this token is listed twice"));
  EXPECT_THAT(TokenAuthenticator::Parse("# only comments\n", "t.txt").status().message(),
              HasSubstr("holds no tokens"));
  EXPECT_THAT(TokenAuthenticator::FromFile("/nonexistent/tokens").status().message(),
              HasSubstr("/nonexistent/tokens"));
}

TEST(TokenAuthenticatorTest, MissingMalformedOrUnknownTokensAreUnauthenticated) {
  TokenAuthenticator auth({TokenAuthenticator::MakeToken("secret", "*")});
  EXPECT_EQ(auth.Authenticate(std::nullopt).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Basic secret").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Bearer secre").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Bearer secrets").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(auth.Authenticate("Bearer guess").status().message(), Not(HasSubstr("guess")));
  // No tokens configured: nothing required, no token identity.
  absl::StatusOr<const TokenAuthenticator::Token*> none = TokenAuthenticator().Authenticate("x");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
}

TEST(CallerTest, ACallerMayClaimOnlyTheIdsItProves) {
  const TokenAuthenticator::Token phone = TokenAuthenticator::MakeToken("s", "phone-1");
  const TokenAuthenticator::Token fleet = TokenAuthenticator::MakeToken("f", "fleet-*");
  EXPECT_TRUE(Caller(std::nullopt, &phone).MayClaim("phone-1").ok());
  EXPECT_EQ(Caller(std::nullopt, &phone).MayClaim("phone-2").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(Caller(std::nullopt, &phone).many_ids());
  EXPECT_TRUE(Caller(std::nullopt, &fleet).many_ids());
  // A certificate proves exactly one id; with a token as well, both must allow it.
  EXPECT_TRUE(Caller("alice", nullptr).MayClaim("alice").ok());
  const absl::Status other = Caller("alice", nullptr).MayClaim("bob");
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.message(), HasSubstr("\"alice\""));
  EXPECT_EQ(Caller("fleet-1", &phone).MayClaim("fleet-1").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Caller("alice", nullptr).identity(), "cert:alice");
  EXPECT_EQ(Caller(std::nullopt, &phone).identity(), phone.name);
  EXPECT_EQ(Caller(std::nullopt, nullptr).identity(), "anonymous");
  EXPECT_TRUE(Caller(std::nullopt, nullptr).MayClaim("anyone").ok());
}

TEST(CertificateClientIdTest, TheFedkitUriWinsOverTheCommonName) {
  EXPECT_EQ(CertificateClientId({"spiffe://x/y", "urn:fedkit:client:alice"}, {"bob"}), "alice");
  EXPECT_EQ(CertificateClientId({"spiffe://x/y"}, {"bob"}), "bob");
  EXPECT_EQ(CertificateClientId({"urn:fedkit:client:bad id"}, {"FedKit test CA"}), std::nullopt);
  EXPECT_EQ(CertificateClientId({}, {}), std::nullopt);
}

}  // namespace
}  // namespace fedkit::server
