#include "test_support.hpp"

#include <signal.h>
#include <stdlib.h>

#include <condition_variable>
#include <fstream>
#include <thread>

#include <Poco/Pipe.h>
#include <Poco/Process.h>

namespace synthorg::testing {

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(SYNTHORG_FIXTURE_DIR) / (name + ".so");
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "synthorg-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::plugins(const std::vector<std::string>& fixtures) const {
  auto dir = path_ / "plugins";
  std::filesystem::create_directories(dir);
  for (const auto& name : fixtures) std::filesystem::create_symlink(fixture(name), dir / (name + ".so"));
  return dir;
}

std::filesystem::path TempDir::write(const std::string& name, const std::string& text) const {
  auto file = path_ / name;
  std::ofstream(file) << text;
  return file;
}

struct Process::State {
  Poco::Pipe out;
  std::unique_ptr<Poco::ProcessHandle> handle;
  std::thread reader;
  mutable std::mutex mutex;
  std::condition_variable changed;
  std::string output;
  bool closed = false;
  int exit_code = -2;
};

Process::Process(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                 const std::vector<std::string>& wrapper)
    : state_(std::make_unique<State>()) {
  Poco::Process::Env environment(env.begin(), env.end());
  // Tests own the environment they depend on: no inherited configuration leaks in.
  for (const char* name : {"SYNTHORG_CONFIG_PATH", "SYNTHORG_DATABASE_URL", "SYNTHORG_LOG_DIR", "SYNTHORG_LOG_FORMAT"})
    if (!environment.count(name) && getenv(name)) environment[name] = "";
  std::string program = SYNTHORG_BIN;
  std::vector<std::string> arguments = args;
  if (!wrapper.empty()) {
    program = wrapper.front();
    arguments.assign(wrapper.begin() + 1, wrapper.end());
    arguments.push_back(SYNTHORG_BIN);
    arguments.insert(arguments.end(), args.begin(), args.end());
  }
  state_->handle = std::make_unique<Poco::ProcessHandle>(
      Poco::Process::launch(program, arguments, std::filesystem::temp_directory_path().string(), nullptr,
                            &state_->out, &state_->out, environment));
  state_->out.close(Poco::Pipe::CLOSE_WRITE);
  state_->reader = std::thread([state = state_.get()] {
    char buffer[4096];
    for (int n; (n = state->out.readBytes(buffer, sizeof buffer)) > 0;) {  // returns what is there, not 4 KiB
      std::lock_guard lock(state->mutex);
      state->output.append(buffer, static_cast<std::size_t>(n));
      state->changed.notify_all();
    }
    std::lock_guard lock(state->mutex);
    state->closed = true;
    state->changed.notify_all();
  });
}

Process::~Process() {
  if (state_->exit_code == -2 && state_->handle->tryWait() == -1) {
    Poco::Process::kill(*state_->handle);
    state_->handle->wait();
  }
  state_->reader.join();
}

bool Process::wait_for_output(const std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->output.find(text) != std::string::npos || state_->closed; }) &&
         state_->output.find(text) != std::string::npos;
}

void Process::signal(int signal_number) { ::kill(state_->handle->id(), signal_number); }

int Process::pid() const { return state_->handle->id(); }

int Process::wait(std::chrono::milliseconds timeout) {
  if (state_->exit_code != -2) return state_->exit_code;
  // tryWait reaps: isRunning would call an exited, unreaped child (a zombie) running.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int code = state_->handle->tryWait();
  while (code == -1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    code = state_->handle->tryWait();
  }
  if (code == -1) {
    Poco::Process::kill(*state_->handle);
    state_->handle->wait();
  }
  state_->exit_code = code;
  std::unique_lock lock(state_->mutex);
  state_->changed.wait_for(lock, std::chrono::seconds(5), [&] { return state_->closed; });
  return state_->exit_code;
}

std::string Process::output() const {
  std::lock_guard lock(state_->mutex);
  return state_->output;
}

Result run_synthorg(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                    std::chrono::milliseconds timeout) {
  Process process(args, env);
  int code = process.wait(timeout);
  return {code, process.output()};
}

ScopedEnv::ScopedEnv(std::string name, const char* value) : name_(std::move(name)) {
  if (const char* old = std::getenv(name_.c_str())) old_ = old;
  if (value)
    ::setenv(name_.c_str(), value, 1);
  else
    ::unsetenv(name_.c_str());
}

ScopedEnv::~ScopedEnv() {
  if (old_)
    ::setenv(name_.c_str(), old_->c_str(), 1);
  else
    ::unsetenv(name_.c_str());
}

}  // namespace synthorg::testing
