// Corpus replay for fuzz targets under ctest (no libFuzzer needed): runs every file of the
// corpus directories given on the command line through LLVMFuzzerTestOneInput, then a fixed
// number of deterministic mutations of each (bit flips, truncations, splices), so every CI run
// exercises the decoder on malformed input as well. A crash or sanitizer report fails the test.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kube_router/base/sanitizers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::vector<uint8_t>> LoadCorpus(int argc, char** argv) {
  std::vector<std::vector<uint8_t>> inputs;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path root(argv[i]);
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(root)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(root))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (std::filesystem::exists(root)) {
      files.push_back(root);
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  return inputs;
}

std::vector<uint8_t> Mutate(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b,
                            std::mt19937& rng) {
  std::vector<uint8_t> out = a;
  switch (rng() % 5) {
    case 0:  // flip a few bits
      for (int i = 0; i < 4 && !out.empty(); ++i) out[rng() % out.size()] ^= 1u << (rng() % 8);
      break;
    case 1:  // truncate
      if (!out.empty()) out.resize(rng() % out.size());
      break;
    case 2:  // set a byte to an edge value
      if (!out.empty()) out[rng() % out.size()] = (rng() % 2) ? 0xff : 0x00;
      break;
    case 3: {  // splice with another input
      size_t cut = out.empty() ? 0 : rng() % out.size();
      out.resize(cut);
      size_t from = b.empty() ? 0 : rng() % b.size();
      out.insert(out.end(), b.begin() + static_cast<long>(from), b.end());
      break;
    }
    default:  // duplicate a slice
      if (out.size() > 2) {
        size_t s = rng() % out.size(), len = rng() % (out.size() - s);
        std::vector<uint8_t> slice(out.begin() + static_cast<long>(s),
                                   out.begin() + static_cast<long>(s + len));
        out.insert(out.begin() + static_cast<long>(rng() % out.size()), slice.begin(), slice.end());
      }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  auto corpus = LoadCorpus(argc, argv);
  if (corpus.empty()) {
    std::fprintf(stderr, "fuzz replay: no corpus files found\n");
    return 1;
  }
  for (const auto& input : corpus) LLVMFuzzerTestOneInput(input.data(), input.size());
  std::mt19937 rng(20261126);  // fixed seed: every run replays the same mutations
#if KR_ASAN() || KR_TSAN()
  // Sanitized code runs 10-20 times slower; the release flavour replays the full count.
  const int kMutationsPerInput = 200;
#else
  const int kMutationsPerInput = 2000;
#endif
  size_t runs = corpus.size();
  for (size_t i = 0; i < corpus.size(); ++i) {
    for (int m = 0; m < kMutationsPerInput; ++m) {
      auto input = Mutate(corpus[i], corpus[rng() % corpus.size()], rng);
      LLVMFuzzerTestOneInput(input.data(), input.size());
      ++runs;
    }
  }
  std::printf("fuzz replay: %zu corpus files, %zu executions, no crash\n", corpus.size(), runs);
  return 0;
}
