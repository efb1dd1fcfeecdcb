// email-listener entry point (placeholder until app/ is wired).
#include <cstdio>
#include <cstring>

#include "el/version.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("email-listener %s\n", el::kVersion);
    return 0;
  }
  return 2;
}
