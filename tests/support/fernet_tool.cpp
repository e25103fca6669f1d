// fernet-tool: our Fernet on stdin/stdout, so another implementation (tests/fernet_interop_test.py,
// with Python's `cryptography`) can exchange tokens with it. Built with the tests only.
//   fernet-tool encrypt KEY              < message > token
//   fernet-tool decrypt KEY [TTL_SECONDS] < token   > message
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "synthorg/crypto.hpp"

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if ((mode != "encrypt" && mode != "decrypt") || argc < 3 || argc > (mode == "decrypt" ? 4 : 3)) {
    std::fputs("usage: fernet-tool encrypt KEY < message\n       fernet-tool decrypt KEY [TTL_SECONDS] < token\n", stderr);
    return 2;
  }
  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  try {
    synthorg::crypto::Fernet fernet(argv[2]);
    if (mode == "encrypt") {
      std::cout << fernet.encrypt(input);
    } else {
      // A token is never whitespace, so a shell's trailing newline is not part of it.
      while (!input.empty() && (input.back() == '\n' || input.back() == '\r')) input.pop_back();
      std::optional<std::chrono::seconds> ttl;
      if (argc == 4) ttl = std::chrono::seconds(std::stoll(argv[3]));
      std::cout << fernet.decrypt(input, ttl);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fernet-tool: %s\n", e.what());
    return 1;
  }
  return std::cout.flush() ? 0 : 1;
}
