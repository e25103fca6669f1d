// The Store conformance kit: what every synthorg.Store/1 provider must do, checked through the
// interface alone. Run with `synthorg-conformance --kind store --plugin <file> --config <json>`.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "kit.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::conformance {
namespace {

using nlohmann::json;

class StoreKit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (options().plugins.empty()) return;
    host_ = new KitHost();
    host_->start_providers();
    const auto& file = load(options().plugins.front());
    instance_ = new host::PluginInstance(file, host_->context_for(file));
    instance_->configure(options().config);
    within_limit("start()", file.manifest.name, [] { instance_->start(); });
    store_ = host_->registry().get<Store>();
  }
  static void TearDownTestSuite() {
    store_.reset();
    if (instance_) within_limit("stop()", instance_->name(), [] { instance_->stop(); });
    delete instance_;
    delete host_;
    instance_ = nullptr;
    host_ = nullptr;
  }
  void SetUp() override {
    if (!store_) GTEST_FAIL() << "the plugin under test registered no " << Store::service_id;
  }

  // A collection of this run's own, so tests never see each other's documents.
  static std::string fresh(const std::string& stem) {
    static std::mt19937_64 random{std::random_device{}()};
    return "kit_" + stem + "_" + std::to_string(random() % 1000000000);
  }
  std::string collection(const std::string& stem, std::vector<IndexSpec> indexes = {}) {
    auto name = fresh(stem);
    store_->ensure_collection({name, std::move(indexes), {}});
    return name;
  }
  static StoreErrc error_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const StoreError& error) {
      return error.code();
    }
    ADD_FAILURE() << "expected a StoreError";
    return StoreErrc::failed;
  }
  static std::vector<std::string> ids(const Page& page) {
    std::vector<std::string> out;
    for (const auto& document : page.documents) out.push_back(document.id);
    return out;
  }
  // Every page of a query, following cursors.
  std::vector<Document> all_pages(const std::string& name, Query query, std::size_t* pages = nullptr) {
    std::vector<Document> out;
    std::size_t count = 0;
    do {
      auto page = store_->query(name, query);
      ++count;
      EXPECT_LE(page.documents.size(), query.limit);
      out.insert(out.end(), page.documents.begin(), page.documents.end());
      query.cursor = page.next_cursor;
      if (count > 100000) break;
    } while (!query.cursor.empty());
    if (pages) *pages = count;
    return out;
  }

  static KitHost* host_;
  static host::PluginInstance* instance_;
  static std::shared_ptr<Store> store_;
};

KitHost* StoreKit::host_ = nullptr;
host::PluginInstance* StoreKit::instance_ = nullptr;
std::shared_ptr<Store> StoreKit::store_;

TEST_F(StoreKit, InsertThenGetReturnsTheSameDocument) {
  auto name = collection("crud");
  json data = {{"name", "Ada"}, {"tags", {"a", "b"}}, {"nested", {{"n", 1.5}}}, {"big", 9007199254740993LL}};
  auto created = store_->insert(name, data);
  EXPECT_FALSE(created.id.empty());
  EXPECT_EQ(created.version, 1);
  EXPECT_EQ(created.created_at, created.updated_at);
  EXPECT_EQ(created.created_at.size(), 24u) << "RFC 3339 with milliseconds: " << created.created_at;
  EXPECT_EQ(created.created_at.back(), 'Z');
  auto read = store_->get(name, created.id);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->data, data);
  EXPECT_EQ(read->version, 1);
  EXPECT_EQ(read->created_at, created.created_at);
  EXPECT_FALSE(store_->get(name, "no-such-id"));
}

TEST_F(StoreKit, GeneratedIdsAreUniqueAndTimeOrdered) {
  auto name = collection("ids");
  std::vector<std::string> made;
  for (int i = 0; i < 200; ++i) made.push_back(store_->insert(name, json::object()).id);
  EXPECT_EQ(std::set<std::string>(made.begin(), made.end()).size(), made.size());
  EXPECT_LE(made.front().substr(0, 12), made.back().substr(0, 12)) << "ids start with the time";
}

TEST_F(StoreKit, ExplicitIdsAndDuplicates) {
  auto name = collection("explicit");
  auto document = store_->insert(name, {{"x", 1}}, "user:42@example");
  EXPECT_EQ(document.id, "user:42@example");
  EXPECT_EQ(error_of([&] { store_->insert(name, {{"x", 2}}, "user:42@example"); }), StoreErrc::conflict);
  EXPECT_EQ(store_->get(name, "user:42@example")->data, json({{"x", 1}})) << "the duplicate must not overwrite";
}

TEST_F(StoreKit, BadNamesAndDocumentsAreInvalid) {
  auto name = collection("bad");
  EXPECT_EQ(error_of([&] { store_->insert(name, json::array({1})); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->insert(name, json("text")); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->insert(name, json::object(), std::string(256, 'x')); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->insert(name, json::object(), "bad\nid"); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->insert(name, {{"s", std::string("a\0b", 3)}}); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->insert("Robert'); DROP TABLE x;--", json::object()); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->ensure_collection({"9starts_with_digit", {}, {}}); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->ensure_collection({fresh("idx"), {{"a'b"}}, {}}); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->ensure_collection({fresh("idx"), {{"a"}, {"a"}}, {}}); }), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->insert(fresh("never_made"), json::object()); }), StoreErrc::not_found);
}

TEST_F(StoreKit, UpdateIsCompareAndSwap) {
  auto name = collection("cas");
  auto v1 = store_->insert(name, {{"n", 1}});
  auto v2 = store_->update(name, v1.id, {{"n", 2}}, 1);
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.created_at, v1.created_at);
  EXPECT_GE(v2.updated_at, v1.updated_at);
  EXPECT_EQ(error_of([&] { store_->update(name, v1.id, {{"n", 99}}, 1); }), StoreErrc::conflict);
  EXPECT_EQ(store_->get(name, v1.id)->data, json({{"n", 2}})) << "a stale write must never overwrite";
  EXPECT_EQ(store_->get(name, v1.id)->version, 2);
  EXPECT_EQ(error_of([&] { store_->update(name, "missing", {{"n", 1}}, 1); }), StoreErrc::not_found);
}

TEST_F(StoreKit, RemoveHonoursTheVersion) {
  auto name = collection("remove");
  auto document = store_->insert(name, {{"n", 1}});
  store_->update(name, document.id, {{"n", 2}}, 1);
  EXPECT_EQ(error_of([&] { store_->remove(name, document.id, 1); }), StoreErrc::conflict);
  EXPECT_TRUE(store_->get(name, document.id));
  EXPECT_TRUE(store_->remove(name, document.id, 2));
  EXPECT_FALSE(store_->remove(name, document.id));
  EXPECT_FALSE(store_->remove(name, document.id, 3));
  EXPECT_FALSE(store_->get(name, document.id));
}

TEST_F(StoreKit, EqualityQueriesOnEveryScalarType) {
  auto name = collection("shapes", {{"owner"}, {"size"}, {"active"}, {"spec.image"}, {"ratio"}});
  store_->insert(name, {{"owner", "ann"}, {"size", 1}, {"active", true}, {"spec", {{"image", "busybox"}}}, {"ratio", 0.5}}, "a");
  store_->insert(name, {{"owner", "ann"}, {"size", 2}, {"active", false}, {"spec", {{"image", "alpine"}}}, {"ratio", 1.5}}, "b");
  store_->insert(name, {{"owner", "bob"}, {"size", 1}, {"active", true}, {"ratio", nullptr}}, "c");
  store_->insert(name, {{"owner", "Ann"}, {"size", 3}}, "d");
  auto match = [&](std::vector<std::pair<std::string, json>> where) {
    Query query;
    query.where = std::move(where);
    return ids(store_->query(name, query));
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(match({{"owner", "ann"}}), (V{"a", "b"})) << "case-sensitive equality";
  EXPECT_EQ(match({{"owner", "ann"}, {"size", 2}}), (V{"b"}));
  EXPECT_EQ(match({{"size", 1}}), (V{"a", "c"}));
  EXPECT_EQ(match({{"active", true}}), (V{"a", "c"}));
  EXPECT_EQ(match({{"active", false}}), (V{"b"}));
  EXPECT_EQ(match({{"ratio", 1.5}}), (V{"b"}));
  EXPECT_EQ(match({{"spec.image", "busybox"}}), (V{"a"}));
  EXPECT_EQ(match({{"spec.image", nullptr}}), (V{"c", "d"})) << "null matches a missing field";
  EXPECT_EQ(match({{"ratio", nullptr}}), (V{"c", "d"})) << "null matches JSON null and a missing field";
  EXPECT_EQ(match({{"id", "c"}}), (V{"c"}));
  EXPECT_EQ(match({{"owner", "nobody"}}), (V{}));
  EXPECT_EQ(store_->count(name), 4);
  EXPECT_EQ(store_->count(name, {{"owner", "ann"}}), 2);
}

TEST_F(StoreKit, OrderAndLimit) {
  auto name = collection("order", {{"rank"}});
  for (auto [id, rank] : std::vector<std::pair<std::string, int>>{{"a", 3}, {"b", 1}, {"c", 2}, {"d", 2}})
    store_->insert(name, {{"rank", rank}}, id);
  store_->insert(name, json::object(), "e");  // no rank: sorts first ascending, last descending
  Query query;
  query.order_by = "rank";
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(store_->query(name, query)), (V{"e", "b", "c", "d", "a"}));
  query.descending = true;
  EXPECT_EQ(ids(store_->query(name, query)), (V{"a", "d", "c", "b", "e"}));
  query.limit = 2;
  auto page = store_->query(name, query);
  EXPECT_EQ(ids(page), (V{"a", "d"}));
  EXPECT_FALSE(page.next_cursor.empty());
  Query by_id;
  by_id.descending = true;
  EXPECT_EQ(ids(store_->query(name, by_id)), (V{"e", "d", "c", "b", "a"}));
  Query by_created;
  by_created.order_by = "created_at";
  EXPECT_EQ(store_->query(name, by_created).documents.size(), 5u);
}

TEST_F(StoreKit, BadQueriesAreInvalid) {
  auto name = collection("badquery", {{"owner"}});
  auto run = [&](Query query) { return error_of([&] { store_->query(name, query); }); };
  Query unindexed;
  unindexed.where = {{"colour", "red"}};
  EXPECT_EQ(run(unindexed), StoreErrc::invalid);
  Query object_value;
  object_value.where = {{"owner", {{"$ne", 1}}}};
  EXPECT_EQ(run(object_value), StoreErrc::invalid);
  Query bad_order;
  bad_order.order_by = "colour";
  EXPECT_EQ(run(bad_order), StoreErrc::invalid);
  Query zero;
  zero.limit = 0;
  EXPECT_EQ(run(zero), StoreErrc::invalid);
  Query huge;
  huge.limit = 1001;
  EXPECT_EQ(run(huge), StoreErrc::invalid);
  Query garbage;
  garbage.cursor = "not a cursor!";
  EXPECT_EQ(run(garbage), StoreErrc::invalid);
  EXPECT_EQ(error_of([&] { store_->count(name, {{"colour", "red"}}); }), StoreErrc::invalid);
}

TEST_F(StoreKit, CursorsWalkTenThousandDocumentsExactlyOnce) {
  auto name = collection("cursor", {{"bucket"}, {"label"}});
  store_->transaction([&](StoreOps& ops) {
    for (int i = 0; i < 10000; ++i) {
      json data = {{"bucket", i % 7}, {"n", i}};
      if (i % 11 != 0) data["label"] = "l" + std::to_string(i % 13);  // some nulls on the way
      ops.insert(name, data, "doc" + std::to_string(100000 + i));
    }
  });
  ASSERT_EQ(store_->count(name), 10000);
  for (auto order : {"id", "bucket", "label", "created_at"}) {
    for (bool descending : {false, true}) {
      Query query;
      query.order_by = order;
      query.descending = descending;
      query.limit = 333;
      std::size_t pages = 0;
      auto seen = all_pages(name, query, &pages);
      ASSERT_EQ(seen.size(), 10000u) << "order " << order << (descending ? " desc" : " asc");
      std::set<std::string> unique;
      for (const auto& document : seen) unique.insert(document.id);
      EXPECT_EQ(unique.size(), 10000u) << "every document exactly once, order " << order;
      EXPECT_EQ(pages, 31u);
      if (std::string(order) == "bucket") {
        for (std::size_t i = 1; i < seen.size(); ++i) {
          auto a = seen[i - 1].data["bucket"].get<int>(), b = seen[i].data["bucket"].get<int>();
          ASSERT_TRUE(descending ? a >= b : a <= b) << "out of order at " << i;
          if (a == b) {
            ASSERT_TRUE(descending ? seen[i - 1].id > seen[i].id : seen[i - 1].id < seen[i].id);
          }
        }
      }
    }
  }
  Query filtered;
  filtered.where = {{"bucket", 3}};
  filtered.order_by = "label";
  filtered.limit = 100;
  auto in_bucket = all_pages(name, filtered);
  EXPECT_EQ(in_bucket.size(), static_cast<std::size_t>(store_->count(name, {{"bucket", 3}})));
  Query other = filtered;
  other.cursor = store_->query(name, filtered).next_cursor;
  other.where = {{"bucket", 4}};
  EXPECT_EQ(error_of([&] { store_->query(name, other); }), StoreErrc::invalid) << "a cursor is tied to its query";
}

TEST_F(StoreKit, TransactionsCommitAcrossCollections) {
  auto a = collection("txa"), b = collection("txb");
  store_->transaction([&](StoreOps& ops) {
    ops.insert(a, {{"n", 1}}, "one");
    ops.insert(b, {{"n", 2}}, "two");
    EXPECT_TRUE(ops.get(a, "one")) << "a transaction sees its own writes";
  });
  EXPECT_TRUE(store_->get(a, "one"));
  EXPECT_TRUE(store_->get(b, "two"));
}

TEST_F(StoreKit, TransactionsRollBackOnError) {
  auto a = collection("rba"), b = collection("rbb");
  store_->insert(a, {{"n", 1}}, "kept");
  struct Boom : std::runtime_error {
    Boom() : std::runtime_error("boom") {}
  };
  EXPECT_THROW(store_->transaction([&](StoreOps& ops) {
    ops.update(a, "kept", {{"n", 2}}, 1);
    ops.insert(b, {{"n", 3}}, "gone");
    ops.remove(a, "kept");
    throw Boom();
  }), Boom) << "the body's own exception comes back unchanged";
  EXPECT_EQ(store_->get(a, "kept")->data, json({{"n", 1}}));
  EXPECT_EQ(store_->get(a, "kept")->version, 1);
  EXPECT_FALSE(store_->get(b, "gone"));
  // A store error inside rolls back too, and the store keeps working afterwards.
  EXPECT_EQ(error_of([&] {
    store_->transaction([&](StoreOps& ops) {
      ops.insert(b, {{"n", 4}}, "also-gone");
      ops.insert(a, {{"n", 5}}, "kept");  // duplicate id
    });
  }), StoreErrc::conflict);
  EXPECT_FALSE(store_->get(b, "also-gone"));
  EXPECT_NO_THROW(store_->insert(b, {{"n", 6}}, "after"));
}

TEST_F(StoreKit, NestedStoreCallsInsideATransactionAreRefused) {
  auto name = collection("nested");
  EXPECT_EQ(error_of([&] { store_->transaction([&](StoreOps&) { store_->insert(name, json::object()); }); }),
            StoreErrc::invalid);
  EXPECT_EQ(store_->count(name), 0);
}

TEST_F(StoreKit, UniqueIndexesRefuseDuplicates) {
  auto name = collection("unique", {{"email", true}});
  auto ann = store_->insert(name, {{"email", "ann@example.com"}});
  auto bob = store_->insert(name, {{"email", "bob@example.com"}});
  EXPECT_EQ(error_of([&] { store_->insert(name, {{"email", "ann@example.com"}}); }), StoreErrc::conflict);
  EXPECT_EQ(error_of([&] { store_->update(name, bob.id, {{"email", "ann@example.com"}}, 1); }), StoreErrc::conflict);
  EXPECT_EQ(store_->get(name, bob.id)->data["email"], "bob@example.com");
  store_->insert(name, json::object());
  EXPECT_NO_THROW(store_->insert(name, json::object())) << "missing values do not clash";
  EXPECT_NO_THROW(store_->update(name, ann.id, {{"email", "ann2@example.com"}}, 1));
  EXPECT_NO_THROW(store_->insert(name, {{"email", "ann@example.com"}})) << "the freed value can be used again";
}

TEST_F(StoreKit, ConcurrentWritersNeverLoseAnUpdate) {
  auto name = collection("concurrent");
  store_->insert(name, {{"count", 0}}, "counter");
  constexpr int threads = 8, increments = 40;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < increments; ++i) {
        store_->insert(name, {{"writer", t}, {"i", i}});
        for (;;) {
          auto current = store_->get(name, "counter");
          try {
            store_->update(name, "counter", {{"count", current->data["count"].get<int>() + 1}}, current->version);
            break;
          } catch (const StoreError& error) {
            if (error.code() != StoreErrc::conflict) throw;
            ++conflicts;
          }
        }
      }
    });
  for (auto& worker : workers) worker.join();
  auto counter = store_->get(name, "counter");
  EXPECT_EQ(counter->data["count"], threads * increments);
  EXPECT_EQ(counter->version, threads * increments + 1);
  EXPECT_EQ(store_->count(name), threads * increments + 1);
  RecordProperty("cas_conflicts", conflicts.load());
}

TEST_F(StoreKit, MigrationsRunOnceInOrder) {
  auto name = fresh("migrate");
  std::vector<int> ran;
  auto step = [&](int version) {
    return Migration{version, "step " + std::to_string(version), [&, version](StoreOps& ops) {
                       ran.push_back(version);
                       ops.insert(name, {{"by", version}}, "m" + std::to_string(version));
                     }};
  };
  CollectionSpec spec{name, {{"by"}}, {step(2), step(1)}};
  store_->ensure_collection(spec);
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  EXPECT_EQ(store_->schema_version(name), 2);
  store_->ensure_collection(spec);
  EXPECT_EQ(ran, (std::vector<int>{1, 2})) << "a second run changes nothing";
  spec.migrations.push_back(step(3));
  store_->ensure_collection(spec);
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(store_->count(name), 3);
  EXPECT_EQ(store_->schema_version(fresh("unknown")), 0);
}

TEST_F(StoreKit, AFailedMigrationRollsBackAndCanBeRetried) {
  auto name = fresh("badmigration");
  bool fail = true;
  CollectionSpec spec{name, {}, {{1, "fine", [&](StoreOps& ops) { ops.insert(name, json::object(), "one"); }},
                                 {2, "flaky", [&](StoreOps& ops) {
                                    ops.insert(name, json::object(), "two");
                                    if (fail) throw std::runtime_error("migration 2 failed");
                                  }}}};
  EXPECT_THROW(store_->ensure_collection(spec), std::runtime_error);
  EXPECT_EQ(store_->schema_version(name), 1);
  EXPECT_TRUE(store_->get(name, "one"));
  EXPECT_FALSE(store_->get(name, "two")) << "the failed step's writes are rolled back";
  fail = false;
  store_->ensure_collection(spec);
  EXPECT_EQ(store_->schema_version(name), 2);
  EXPECT_TRUE(store_->get(name, "two"));
}

TEST_F(StoreKit, IndexesCanBeAddedAndDroppedLater) {
  auto name = collection("reindex", {{"a"}});
  store_->insert(name, {{"a", 1}, {"b", 2}}, "x");
  store_->ensure_collection({name, {{"b", true}}, {}});
  Query by_b;
  by_b.where = {{"b", 2}};
  EXPECT_EQ(ids(store_->query(name, by_b)), (std::vector<std::string>{"x"}));
  Query by_a;
  by_a.where = {{"a", 1}};
  EXPECT_EQ(error_of([&] { store_->query(name, by_a); }), StoreErrc::invalid) << "'a' is no longer indexed";
  EXPECT_EQ(error_of([&] { store_->insert(name, {{"b", 2}}); }), StoreErrc::conflict) << "'b' is now unique";
}

TEST_F(StoreKit, UnicodeAndLargeDocumentsRoundTrip) {
  auto name = collection("unicode", {{"title"}});
  json data = {{"title", "Grüße, 世界 — مرحبا 👩‍💻 e\u0301"}, {"emoji_key_😀", "ok"}, {"escapes", "tab\t\"quote\" \\ /"}};
  auto document = store_->insert(name, data, "ключ-🔑");
  EXPECT_EQ(store_->get(name, "ключ-🔑")->data, data);
  Query query;
  query.where = {{"title", data["title"]}};
  EXPECT_EQ(ids(store_->query(name, query)), (std::vector<std::string>{document.id}));

  std::string blob(1 << 20, 'x');
  for (std::size_t i = 0; i < blob.size(); i += 97) blob[i] = static_cast<char>('a' + i % 26);
  auto large = store_->insert(name, {{"blob", blob}});
  EXPECT_EQ(store_->get(name, large.id)->data["blob"].get<std::string>(), blob);
  store_->update(name, large.id, {{"blob", blob + "!"}}, 1);
  EXPECT_EQ(store_->get(name, large.id)->data["blob"].get<std::string>().size(), blob.size() + 1);
}

TEST_F(StoreKit, InjectionStringsAreStoredVerbatim) {
  auto name = collection("injection", {{"value"}});
  const std::vector<std::string> nasty = {
      "'; DROP TABLE synthorg_collections; --", "\" OR 1=1 --", "' OR '1'='1", "\\'; SELECT 1; --",
      "$1", "?", "%", "_", "%_%", "\\", "\\\\", "'", "''", "\"", "`", "]]", "{}", "$.value", "'$.x'",
      "json_extract(data,'$.a')", "1; VACUUM", "/*", "*/", "--", "NULL", "null", "E'\\x00'"};
  for (std::size_t i = 0; i < nasty.size(); ++i) {
    const auto& text = nasty[i];
    auto id = "id-" + text;
    store_->insert(name, {{"value", text}, {text, text}}, id);
    auto read = store_->get(name, id);
    ASSERT_TRUE(read) << text;
    EXPECT_EQ(read->data["value"], text);
    EXPECT_EQ(read->data[text], text);
    Query query;
    query.where = {{"value", text}};
    EXPECT_EQ(ids(store_->query(name, query)), (std::vector<std::string>{id})) << text;
  }
  EXPECT_EQ(store_->count(name), static_cast<std::int64_t>(nasty.size()));
  EXPECT_NO_THROW(store_->ensure_collection({name, {{"value"}}, {}})) << "the metadata survived";
}

TEST_F(StoreKit, PingAndInfo) {
  EXPECT_NO_THROW(store_->ping());
  auto info = store_->info();
  EXPECT_TRUE(info.backend == "sqlite" || info.backend == "postgres") << info.backend;
  EXPECT_FALSE(info.location.empty());
  EXPECT_EQ(info.location.find("password"), std::string::npos);
  EXPECT_FALSE(info.server_version.empty());
}

TEST_F(StoreKit, SnapshotRestoresExactlyWhatWasThere) {
  auto name = collection("snapshot", {{"k"}});
  for (int i = 0; i < 50; ++i) store_->insert(name, {{"k", i}}, "s" + std::to_string(i));
  auto directory = std::filesystem::temp_directory_path() / fresh("snapshot_dir");
  std::filesystem::create_directories(directory);
  auto snapshot = store_->snapshot(directory);
  ASSERT_FALSE(snapshot.files.empty());
  for (const auto& file : snapshot.files) EXPECT_GT(std::filesystem::file_size(file), 0u) << file;

  store_->update(name, "s1", {{"k", -1}}, 1);
  store_->remove(name, "s2");
  store_->insert(name, {{"k", 1000}}, "after");
  auto later = collection("after_snapshot");

  store_->restore(snapshot);
  EXPECT_EQ(store_->count(name), 50);
  EXPECT_EQ(store_->get(name, "s1")->data["k"], 1);
  EXPECT_TRUE(store_->get(name, "s2"));
  EXPECT_FALSE(store_->get(name, "after"));
  EXPECT_EQ(error_of([&] { store_->count(later); }), StoreErrc::not_found) << "collections made later are gone";
  EXPECT_NO_THROW(store_->insert(name, {{"k", 2000}})) << "the store serves after a restore";
  std::filesystem::remove_all(directory);
}

}  // namespace
}  // namespace synthorg::conformance
