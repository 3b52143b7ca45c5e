// predlog: the command-line client of predlogd. `predlog --help` lists the
// subcommands; services/cli/cli.h has the exit codes.
#include <iostream>
#include <string>
#include <vector>

#include "services/cli/cli.h"

int main(int argc, char** argv) {
  return predlog::services::RunCli(std::vector<std::string>(argv + 1, argv + argc), std::cin,
                                   std::cout, std::cerr);
}
