// The C++ tiny Llama's log-probabilities for the Python cross-check (test_tiny_llama.py):
//   tiny_llama_logprobs MODEL_DIR SEQ_LEN TOKEN...
// rotates with the model config's table for SEQ_LEN tokens (RopeConfig::table_for) and prints
// {"log_probs": [[vocab floats] per token]}.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "tiny_llama.hpp"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL_DIR SEQ_LEN TOKEN...\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::int64_t seq_len = std::stoll(argv[2]);
  tiny_llama::Sequence s;
  for (int i = 3; i < argc; ++i) s.tokens.push_back(std::stoi(argv[i]));
  s.targets = s.tokens;
  s.loss_weight.assign(s.tokens.size(), 0.0f);
  const tiny_llama::Weights w = tiny_llama::load_model_dir(dir);
  const ropescale::RopeConfig rc = tiny_llama::load_rope_config(dir);
  const ropescale::RotaryCache cache(rc.spec, rc.table_for(seq_len).value(),
                                     static_cast<std::int64_t>(s.tokens.size()));
  tiny_llama::Matrix lp;
  tiny_llama::forward(w, tiny_llama::Rope{&cache}, s, &lp);
  nlohmann::json rows = nlohmann::json::array();
  for (Eigen::Index t = 0; t < lp.cols(); ++t)
    rows.push_back(std::vector<float>(lp.col(t).data(), lp.col(t).data() + lp.rows()));
  std::cout << nlohmann::json{{"log_probs", rows}}.dump() << "\n";
  return 0;
}
