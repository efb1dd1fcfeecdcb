// `email-listener serve`: wires the adapters and runs until SIGTERM/SIGINT.
#pragma once
#include "app/config.hpp"

namespace el::app {
// Returns the process exit status.
int serve(const Config& cfg);
}  // namespace el::app
