// Snapshots with pg_dump's custom format and restores with pg_restore in one transaction.
// The tools get the connection through PG* environment variables, never on the command line:
// another user can read a process's arguments, not its environment.
#include <cstdlib>
#include <iterator>

#include <Poco/Exception.h>
#include <Poco/Path.h>
#include <Poco/Pipe.h>
#include <Poco/PipeStream.h>
#include <Poco/Process.h>
#include <fmt/format.h>
#include <pqxx/result>
#include <pqxx/transaction>

#include "postgres_store.hpp"
#include "sql.hpp"

namespace synthorg::store_postgres {
namespace {

constexpr const char* kFormat = "pg_dump-custom";
constexpr const char* kFileName = "database.pgdump";

[[noreturn]] void fail(StoreErrc code, const std::string& message) { throw StoreError(code, message); }

std::optional<std::string> find_tool(const std::string& name) {
  const char* path = std::getenv("PATH");
  Poco::Path found;
  if (path && Poco::Path::find(path, name, found)) return found.toString();
  return std::nullopt;
}

struct ToolRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr together

  // The tool's own lines ("pg_restore: error: ..."), enough to act on, without the noise.
  std::string summary() const {
    std::string lines;
    std::size_t start = 0;
    int kept = 0;
    while (start < output.size() && kept < 4) {
      auto end = output.find('\n', start);
      auto line = output.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (!line.empty()) {
        lines += (lines.empty() ? "" : "; ") + line;
        ++kept;
      }
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return lines.empty() ? "no output" : lines;
  }
};

ToolRun run_tool(const std::string& tool, const std::vector<std::string>& args, const ConnectionSettings& settings) {
  Poco::Process::Env env;
  for (const auto& [name, value] : settings.environment()) env[name] = value;
  try {
    Poco::Pipe input;
    Poco::Pipe output;
    auto handle = Poco::Process::launch(tool, args, &input, &output, &output, env);
    input.close();  // never let a tool wait for a password on our stdin
    Poco::PipeInputStream stream(output);
    ToolRun run;
    run.output.assign(std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>());
    run.exit_code = handle.wait();
    return run;
  } catch (const Poco::Exception& e) {
    fail(StoreErrc::failed, fmt::format("could not run {}: {}", tool, e.displayText()));
  }
}

// libpq's keyword/value quoting, for pg_restore's --dbname (a bare name holding '=' would be
// read as a connection string).
std::string dbname_argument(const ConnectionSettings& settings) {
  std::string name = settings.database.empty() ? settings.user : settings.database;
  std::string quoted = "dbname='";
  for (char c : name) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "'";
}

}  // namespace

Snapshot PostgresStore::snapshot(const std::filesystem::path& directory) {
  refuse_nested();
  auto pg_dump = find_tool("pg_dump");
  if (!pg_dump) fail(StoreErrc::failed, "pg_dump is not installed; install postgresql-client");
  if (!std::filesystem::is_directory(directory))
    fail(StoreErrc::invalid, fmt::format("cannot write a snapshot into {}: not a directory", directory.string()));
  auto target = directory / kFileName;
  // pg_dump reads everything in one repeatable-read transaction: a consistent copy while the
  // store keeps serving.
  auto run = run_tool(*pg_dump, {"-Fc", "--no-owner", "--no-privileges", "--no-password", "-f", target.string()},
                      options_.connection);
  if (run.exit_code != 0) {
    std::error_code ignored;
    std::filesystem::remove(target, ignored);
    fail(StoreErrc::failed, fmt::format("pg_dump failed (exit {}): {}", run.exit_code, run.summary()));
  }
  log_.info("Took a snapshot", {{"file", target.string()}});
  return {{target}, kFormat};
}

void PostgresStore::restore(const Snapshot& snapshot) {
  refuse_nested();
  if (snapshot.format != kFormat || snapshot.files.size() != 1)
    fail(StoreErrc::invalid, fmt::format("store-postgres cannot restore a '{}' snapshot; it needs one made by "
                                         "store-postgres ({})",
                                         snapshot.format, kFormat));
  const auto file = snapshot.files.front().string();
  if (!std::filesystem::is_regular_file(snapshot.files.front()))
    fail(StoreErrc::invalid,
         fmt::format("the snapshot file {} does not exist; the live database was not touched", file));
  auto pg_restore = find_tool("pg_restore");
  if (!pg_restore) fail(StoreErrc::failed, "pg_restore is not installed; install postgresql-client");

  // The table of contents first: a file that is not an archive, or has a damaged header, is
  // refused before anything is touched. (Damage further in fails inside the transaction.)
  auto listing = run_tool(*pg_restore, {"--list", file}, options_.connection);
  if (listing.exit_code != 0)
    fail(StoreErrc::invalid, fmt::format("the snapshot {} is not a pg_dump archive pg_restore can read ({}); the live "
                                         "database was not touched",
                                         file, listing.summary()));
  if (listing.output.find(std::string(" ") + sql::meta_table + " ") == std::string::npos)
    fail(StoreErrc::invalid, fmt::format("the snapshot {} is a pg_dump archive but not of a synthorg database; the "
                                         "live database was not touched",
                                         file));

  if (!server_lock_.try_exclusive())
    fail(StoreErrc::conflict, "another synthorg server is using this database; stop it before restoring");
  struct Shared {
    ServerLock& lock;
    ~Shared() { lock.back_to_shared(); }
  } back_to_shared{server_lock_};

  auto run = run_tool(*pg_restore,
                      {"--clean", "--if-exists", "--single-transaction", "--no-owner", "--no-password",
                       "--dbname=" + dbname_argument(options_.connection), file},
                      options_.connection);
  if (run.exit_code != 0)
    fail(StoreErrc::failed, fmt::format("pg_restore failed (exit {}): {}; the live database was not changed (the "
                                        "restore runs in a single transaction)",
                                        run.exit_code, run.summary()));
  forget_all();

  // pg_restore --clean replaces what the archive holds; collections created after the
  // snapshot are not in it, and their tables would otherwise come back to life on the next
  // ensure_collection with data from after the snapshot.
  auto held = pool_.acquire();
  held.guarded("dropping collections newer than the snapshot", [&] {
    pqxx::work tx(held.connection());
    auto stale = tx.exec(fmt::format("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND "
                                     "tablename LIKE 'doc\\_%' AND substr(tablename, 5) NOT IN (SELECT name FROM {})",
                                     sql::meta_table));
    for (const auto& row : stale) tx.exec0(fmt::format("DROP TABLE IF EXISTS \"{}\"", row[0].as<std::string>()));
    tx.commit();
  });
  log_.info("Restored a snapshot", {{"file", file}});
}

}  // namespace synthorg::store_postgres
