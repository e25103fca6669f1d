// The Metrics registry: families by name, series by label values, rendered in the Prometheus
// text format. Series are atomics, so the hot path (a handle's add/observe) takes no lock; the
// registry's mutex guards only the maps, touched when a series is looked up or rendered.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "synthorg/services/metrics.hpp"

namespace synthorg {
namespace {

enum class Kind { counter, gauge, histogram };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::counter: return "counter";
    case Kind::gauge: return "gauge";
    default: return "histogram";
  }
}

bool valid_name(std::string_view name, bool label) {
  if (name.empty()) return false;
  auto head = [label](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (!label && c == ':'); };
  if (!head(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return head(c) || std::isdigit(static_cast<unsigned char>(c)); });
}

std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

// Lock-free add on a double: C++20's atomic<double>::fetch_add, spelled as a CAS loop so it
// builds the same everywhere.
void atomic_add(std::atomic<double>& target, double value) noexcept {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + value, std::memory_order_relaxed)) {
  }
}

class CounterSeries final : public Counter {
 public:
  void add(double value) noexcept override {
    if (value > 0) atomic_add(value_, value);
  }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class GaugeSeries final : public Gauge {
 public:
  void set(double value) noexcept override { value_.store(value, std::memory_order_relaxed); }
  void add(double value) noexcept override { atomic_add(value_, value); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class HistogramSeries final : public Histogram {
 public:
  explicit HistogramSeries(const std::vector<double>& bounds) : bounds_(bounds), counts_(bounds.size()) {}
  void observe(double value) noexcept override {
    // Counts per bucket, not cumulative: one increment per observation; render adds them up.
    auto at = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
    if (static_cast<std::size_t>(at) < counts_.size()) counts_[at].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    atomic_add(sum_, value);
  }
  void render(std::string& out, std::string_view name, const std::string& labels) const {
    std::uint64_t cumulative = 0;
    auto with = [&](std::string_view le) {
      return labels.empty() ? fmt::format("le=\"{}\"", le) : fmt::format("{},le=\"{}\"", labels, le);
    };
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += counts_[i].load(std::memory_order_relaxed);
      out += fmt::format("{}_bucket{{{}}} {}\n", name, with(number(bounds_[i])), cumulative);
    }
    auto count = count_.load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{{}}} {}\n", name, with("+Inf"), count);
    auto braces = labels.empty() ? std::string() : "{" + labels + "}";
    out += fmt::format("{}_sum{} {}\n", name, braces, number(sum_.load(std::memory_order_relaxed)));
    out += fmt::format("{}_count{} {}\n", name, braces, count);
  }

 private:
  const std::vector<double>& bounds_;  // the family's, which outlives its series
  std::vector<std::atomic<std::uint64_t>> counts_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

struct Family {
  Kind kind;
  std::string help;
  std::vector<std::string> label_names;
  std::vector<double> buckets;
  std::map<std::vector<std::string>, std::shared_ptr<void>> series;  // by label values
};

class Registry final : public Metrics, public std::enable_shared_from_this<Registry> {
 public:
  std::shared_ptr<Counter> counter(std::string_view name, std::string_view help, const MetricLabels& labels) override {
    return std::static_pointer_cast<CounterSeries>(find(Kind::counter, name, help, labels, {}));
  }
  std::shared_ptr<Gauge> gauge(std::string_view name, std::string_view help, const MetricLabels& labels) override {
    return std::static_pointer_cast<GaugeSeries>(find(Kind::gauge, name, help, labels, {}));
  }
  std::shared_ptr<Histogram> histogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                                       std::vector<double> buckets) override {
    if (buckets.empty()) buckets = default_buckets();
    if (!std::is_sorted(buckets.begin(), buckets.end()) ||
        std::adjacent_find(buckets.begin(), buckets.end()) != buckets.end())
      throw std::invalid_argument(fmt::format("histogram {}: bucket bounds must increase", name));
    return std::static_pointer_cast<HistogramSeries>(find(Kind::histogram, name, help, labels, std::move(buckets)));
  }

  Token add_collector(std::function<void()> collect) override {
    std::lock_guard lock(mutex_);
    auto id = next_collector_++;
    collectors_.emplace(id, std::move(collect));
    return Token([weak = weak_from_this(), id] {
      if (auto self = weak.lock()) {
        std::lock_guard lock(self->mutex_);
        self->collectors_.erase(id);
      }
    });
  }

  std::string render() override {
    std::vector<std::function<void()>> collectors;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [id, collect] : collectors_) collectors.push_back(collect);
    }
    for (const auto& collect : collectors) {
      try {
        collect();
      } catch (...) {  // a failing collector leaves its gauges as they were
      }
    }
    std::string out;
    std::lock_guard lock(mutex_);
    for (const auto& [name, family] : families_) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name, kind_name(family.kind));
      for (const auto& [values, series] : family.series) {
        std::string labels;
        for (std::size_t i = 0; i < values.size(); ++i)
          labels += fmt::format("{}{}=\"{}\"", i ? "," : "", family.label_names[i], escape_label(values[i]));
        auto braces = labels.empty() ? std::string() : "{" + labels + "}";
        switch (family.kind) {
          case Kind::counter:
            out += fmt::format("{}{} {}\n", name, braces, number(static_cast<CounterSeries*>(series.get())->value()));
            break;
          case Kind::gauge:
            out += fmt::format("{}{} {}\n", name, braces, number(static_cast<GaugeSeries*>(series.get())->value()));
            break;
          case Kind::histogram:
            static_cast<HistogramSeries*>(series.get())->render(out, name, labels);
            break;
        }
      }
    }
    return out;
  }

 private:
  std::shared_ptr<void> find(Kind kind, std::string_view name, std::string_view help, const MetricLabels& labels,
                             std::vector<double> buckets) {
    std::vector<std::string> values;
    values.reserve(labels.size());
    for (const auto& [label, value] : labels) values.push_back(value);
    std::lock_guard lock(mutex_);
    auto it = families_.find(name);
    if (it == families_.end()) {
      if (!valid_name(name, false)) throw std::invalid_argument(fmt::format("'{}' is not a valid metric name", name));
      Family family{kind, std::string(help), {}, std::move(buckets), {}};
      for (const auto& [label, value] : labels) {
        if (!valid_name(label, true) || label == "le")
          throw std::invalid_argument(fmt::format("metric {}: '{}' is not a valid label name", name, label));
        family.label_names.push_back(label);
      }
      it = families_.emplace(std::string(name), std::move(family)).first;
    } else {
      bool same = it->second.kind == kind && it->second.label_names.size() == labels.size();
      for (std::size_t i = 0; same && i < labels.size(); ++i) same = it->second.label_names[i] == labels[i].first;
      if (!same)
        throw std::invalid_argument(fmt::format("metric {} is already a {} with other labels or type",
                                                name, kind_name(it->second.kind)));
    }
    auto& family = it->second;
    auto& series = family.series[std::move(values)];
    if (!series) {
      switch (kind) {
        case Kind::counter: series = std::make_shared<CounterSeries>(); break;
        case Kind::gauge: series = std::make_shared<GaugeSeries>(); break;
        case Kind::histogram: series = std::make_shared<HistogramSeries>(family.buckets); break;
      }
    }
    // The handle keeps the registry alive: a histogram's bounds live in its family.
    return std::shared_ptr<void>(series.get(), [keep = shared_from_this(), series](void*) {});
  }

  std::mutex mutex_;
  std::map<std::string, Family, std::less<>> families_;
  std::map<std::uint64_t, std::function<void()>> collectors_;
  std::uint64_t next_collector_ = 0;
};

}  // namespace

std::shared_ptr<Metrics> make_metrics_registry() { return std::make_shared<Registry>(); }

}  // namespace synthorg
