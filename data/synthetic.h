// The Synthetic(alpha, beta) federated dataset of the FedProx paper (Li et al., MLSys 2020,
// Sec. 5.1).
#ifndef FEDKIT_DATA_SYNTHETIC_H_
#define FEDKIT_DATA_SYNTHETIC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "data/examples.h"

namespace fedkit::data {

// Per device k: u_k ~ N(0, alpha), B_k ~ N(0, beta); W_k (10x60) and b_k (10) entries ~ N(u_k, 1);
// v_k (60) entries ~ N(B_k, 1); x ~ N(v_k, Sigma) with Sigma diagonal, Sigma_jj = j^-1.2 (j from
// 1); y = argmax(softmax(W_k x + b_k)). N(m, s) here has variance s, as in the paper. Sample counts
// follow the paper's code: floor(lognormal(mu=4, sigma=2)) + 50, capped at
// `max_examples_per_client`. 80% of each device's examples are its training set, the rest its test
// set.
//
// Nothing is stored per client: every quantity is a pure function of (seed, client index), so a
// population of millions costs no memory and any client can be regenerated on any thread.
class SyntheticData {
 public:
  struct Options {
    double alpha = 1.0;
    double beta = 1.0;
    int64_t num_clients = 100;
    uint64_t seed = 0;
    int64_t max_examples_per_client = 10000;
  };

  static constexpr int kFeatureDim = 60;
  static constexpr int kNumClasses = 10;

  // INVALID_ARGUMENT for negative alpha/beta, num_clients < 1 or max_examples_per_client < 50.
  static absl::StatusOr<SyntheticData> Create(const Options& options);

  int64_t num_clients() const { return options_.num_clients; }
  DatasetInfo info() const { return DatasetInfo{{kFeatureDim}, kNumClasses}; }

  // Total examples of device `client` (train + test). Cheap: does not generate features.
  int64_t NumExamples(int64_t client) const;
  int64_t NumTrainExamples(int64_t client) const;

  // The device's training / test examples. Requires 0 <= client < num_clients().
  Examples TrainExamples(int64_t client) const;
  Examples TestExamples(int64_t client) const;

 private:
  explicit SyntheticData(const Options& options) : options_(options) {}
  Examples Generate(int64_t client, bool train) const;

  Options options_;
};

}  // namespace fedkit::data

#endif  // FEDKIT_DATA_SYNTHETIC_H_
