// email-listener entry point: `serve`, `parse FILE.eml`, `--version`, `--help`.
#include <boost/json/serialize.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "app/serve.hpp"
#include "el/version.hpp"
#include "mime/message.hpp"

extern char** environ;

namespace {

constexpr const char* kUsage =
    "email-listener: keeps an IMAP IDLE subscription for every registered mailbox and delivers\n"
    "each new email as JSON to the application's webhook.\n\n"
    "usage:\n"
    "  email-listener serve [options]        run the service (see serve --help)\n"
    "  email-listener parse FILE.eml [--max-attachment-bytes SIZE]\n"
    "                                        print the JSON the service would deliver\n"
    "  email-listener --version\n";

int parse_command(const std::vector<std::string>& args) {
  std::string file;
  el::mime::ParseOptions opts;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--max-attachment-bytes" && i + 1 < args.size()) {
      opts.max_attachment_bytes = el::app::parse_size(args[++i]);
    } else if (file.empty() && args[i].rfind("--", 0) != 0) {
      file = args[i];
    } else {
      std::fprintf(stderr, "email-listener parse: unexpected argument \"%s\"\n", args[i].c_str());
      return 2;
    }
  }
  if (file.empty()) {
    std::fprintf(stderr, "usage: email-listener parse FILE.eml\n");
    return 2;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "email-listener parse: cannot read %s\n", file.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  el::mime::initialize();
  el::mime::MessageMeta meta;
  std::cout << boost::json::serialize(el::mime::to_json(ss.str(), meta, opts)) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::printf("email-listener %s\n", el::kVersion);
    return 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (args[0] == "parse") return parse_command(rest);
    if (args[0] == "serve") {
      std::map<std::string, std::string> env;
      for (char** e = environ; *e; ++e) {
        std::string kv(*e);
        if (auto eq = kv.find('='); eq != std::string::npos)
          env[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      auto cfg = el::app::parse_serve_config(rest, env);
      if (cfg.help) {
        std::fputs(el::app::serve_usage().c_str(), stdout);
        return 0;
      }
      return el::app::serve(cfg);
    }
  } catch (const el::app::ConfigError& e) {
    std::fprintf(stderr, "email-listener: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "email-listener: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "email-listener: unknown command \"%s\"\n\n%s", args[0].c_str(), kUsage);
  return 2;
}
