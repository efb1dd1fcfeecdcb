// Throughput of el::mime::to_json over the fixture corpus, overall and per size class.
#include <benchmark/benchmark.h>
#include <gmime/gmime.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mime/message.hpp"

namespace {

namespace fs = std::filesystem;

enum SizeClass { kAll = 0, kSmall = 1, kMedium = 2, kLarge = 3 };
constexpr std::size_t kSmallMax = 8 * 1024;    // typical text-only mail
constexpr std::size_t kMediumMax = 40 * 1024;  // mail with a small attachment

std::vector<std::string> load(SizeClass cls) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(fs::path(EL_FIXTURES_DIR) / "mime")) {
    if (e.path().extension() == ".eml") paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::ifstream f(p, std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const SizeClass c = raw.size() < kSmallMax    ? kSmall
                        : raw.size() < kMediumMax ? kMedium
                                                  : kLarge;
    if (cls == kAll || cls == c) out.push_back(std::move(raw));
  }
  return out;
}

void BM_ToJson(benchmark::State& state) {
  el::mime::initialize();
  const auto msgs = load(static_cast<SizeClass>(state.range(0)));
  std::size_t bytes = 0;
  for (const auto& m : msgs) bytes += m.size();
  const el::mime::MessageMeta meta{1, "INBOX", {"\\Seen"}, "2024-03-05T13:30:02.000Z"};
  for (auto _ : state) {
    for (const auto& m : msgs) benchmark::DoNotOptimize(el::mime::to_json(m, meta));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * msgs.size()));
  state.counters["messages"] = static_cast<double>(msgs.size());
  state.counters["corpus_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_ToJson)->ArgName("class")->Arg(kAll)->Arg(kSmall)->Arg(kMedium)->Arg(kLarge)->Unit(
    benchmark::kMicrosecond);

// Baseline: GMime alone (parse into a GMimeMessage, read nothing, free), to show what share of
// the time is GMime's and what is ours (decoding, charset conversion, JSON).
void BM_GMimeParseOnly(benchmark::State& state) {
  el::mime::initialize();
  const auto msgs = load(static_cast<SizeClass>(state.range(0)));
  std::size_t bytes = 0;
  for (const auto& m : msgs) bytes += m.size();
  for (auto _ : state) {
    for (const auto& m : msgs) {
      GMimeStream* s = g_mime_stream_mem_new_with_buffer(m.data(), m.size());
      GMimeParser* p = g_mime_parser_new_with_stream(s);
      GMimeMessage* msg = g_mime_parser_construct_message(p, nullptr);
      benchmark::DoNotOptimize(msg);
      if (msg != nullptr) g_object_unref(msg);
      g_object_unref(p);
      g_object_unref(s);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * msgs.size()));
}
BENCHMARK(BM_GMimeParseOnly)
    ->ArgName("class")
    ->Arg(kAll)
    ->Arg(kSmall)
    ->Arg(kMedium)
    ->Arg(kLarge)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
