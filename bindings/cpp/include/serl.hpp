// libserl for C++: a header-only RAII wrapper over the C ABI in serl.h.
//
// Every function throws serl::Error (status + message) where the C call
// fails; strings and arrays the library returns are copied into
// std::string / std::vector and freed at once. The evaluator functions are
// thread-safe; a serl::Filter may move between threads but must not be used
// from two threads at once.
#ifndef SERL_HPP
#define SERL_HPP

#include <serl.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace serl {

/// A failed libserl call: the serl_status and serl_last_error()'s message.
class Error : public std::runtime_error {
public:
    Error(serl_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    /// The C status (SERL_ERR_…).
    serl_status status() const noexcept { return status_; }

private:
    serl_status status_;
};

namespace detail {
inline void check(serl_status st) {
    if (st != SERL_OK) throw Error(st, serl_last_error());
}

/// Owns a string returned by libserl.
struct CString {
    char* p = nullptr;
    CString() = default;
    CString(const CString&) = delete;
    CString& operator=(const CString&) = delete;
    ~CString() { serl_string_free(p); }
    std::string str() const { return p ? std::string(p) : std::string(); }
};

/// NUL-terminated copies of string views, and the pointer array C wants.
class CStrings {
public:
    template <class Range>
    explicit CStrings(const Range& items) {
        for (const auto& s : items) owned_.emplace_back(std::string_view(s));
        for (const auto& s : owned_) ptrs_.push_back(s.c_str());
    }
    const char* const* data() const noexcept { return ptrs_.empty() ? nullptr : ptrs_.data(); }
    size_t size() const noexcept { return ptrs_.size(); }

private:
    std::vector<std::string> owned_;
    std::vector<const char*> ptrs_;
};
}  // namespace detail

/// How vote() groups answers.
enum class VoteMode : serl_vote_mode { String = SERL_VOTE_STRING, Equiv = SERL_VOTE_EQUIV };

/// A response's final answer, as extracted and normalised by SeRL.
struct Answer {
    std::string answer;      ///< extract_answer(response)
    std::string normalized;  ///< normalised once more, as the string vote compares
};

/// The outcome of a majority vote.
struct VoteResult {
    std::vector<double> rewards;  ///< 1.0 in the majority cluster, else 0.0
    std::string majority;         ///< the majority answer
    double agreement = 0.0;       ///< mean reward
};

/// ROUGE-L of a prediction against a target.
struct Rouge {
    double f = 0, p = 0, r = 0;
};

/// One verdict of the diversity filter.
struct FilterVerdict {
    bool kept = false;          ///< joined the pool
    double max_rouge_l = 0.0;   ///< highest ROUGE-L F against the pool
    std::optional<size_t> argmax;  ///< its pool index (seeds first)
};

/// A question-generation prompt (apply your chat template to it).
struct Prompt {
    std::string system;
    std::string user;
};

/// libserl's version.
inline std::string version() { return serl_version(); }

/// Extracts and normalises the final answer of a model response.
inline Answer extract_answer(std::string_view response) {
    std::string r(response);
    detail::CString a, n;
    detail::check(serl_extract_answer(r.c_str(), &a.p, &n.p));
    return {a.str(), n.str()};
}

/// Whether pred is equivalent to ref as math_verify decides it.
inline bool answers_equal(std::string_view pred, std::string_view ref) {
    std::string p(pred), r(ref);
    bool eq = false;
    detail::check(serl_answers_equal(p.c_str(), r.c_str(), &eq));
    return eq;
}

/// Majority vote over a group of sampled responses.
template <class Range>
VoteResult vote(const Range& responses, VoteMode mode = VoteMode::String) {
    detail::CStrings cs(responses);
    VoteResult out;
    out.rewards.assign(cs.size(), 0.0);
    detail::CString majority;
    detail::check(serl_vote(cs.data(), cs.size(), static_cast<serl_vote_mode>(mode), out.rewards.data(), &majority.p,
                            &out.agreement));
    out.majority = majority.str();
    return out;
}

/// ROUGE-L (rouge_score semantics) of prediction against target.
inline Rouge rouge_l(std::string_view target, std::string_view prediction) {
    std::string t(target), p(prediction);
    serl_rouge s{};
    detail::check(serl_rouge_l(t.c_str(), p.c_str(), &s));
    return {s.f, s.p, s.r};
}

/// The questions of a generated numbered list that pass SeRL's rule filters.
inline std::vector<std::string> parse_instructions(std::string_view response, bool keep_case = false) {
    std::string r(response);
    char** items = nullptr;
    size_t len = 0;
    detail::check(serl_parse_instructions(r.c_str(), keep_case, &items, &len));
    std::vector<std::string> out(items, items + len);
    serl_string_array_free(items, len);
    return out;
}

/// SeRL's question-generation prompt from seeds and the kept pool.
template <class Seeds, class Pool>
Prompt build_generation_prompt(const Seeds& seeds, const Pool& pool, size_t shots = 8, uint64_t seed = 0) {
    detail::CStrings s(seeds), p(pool);
    detail::CString sys, user;
    detail::check(serl_build_generation_prompt(s.data(), s.size(), p.data(), p.size(), shots, seed, &sys.p, &user.p));
    return {sys.str(), user.str()};
}

/// Whether lo <= agreement <= hi (SeRL: 0.2 and 0.8).
inline bool difficulty_keep(double agreement, double lo = 0.2, double hi = 0.8) {
    bool keep = false;
    detail::check(serl_difficulty_keep(agreement, lo, hi, &keep));
    return keep;
}

/// SeRL's diversity filter (RAII handle; movable, not copyable).
class Filter {
public:
    template <class Range>
    explicit Filter(const Range& seeds, double threshold = 0.7) {
        detail::CStrings cs(seeds);
        detail::check(serl_filter_new(cs.data(), cs.size(), threshold, &handle_));
    }
    Filter(const Filter&) = delete;
    Filter& operator=(const Filter&) = delete;
    Filter(Filter&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
    Filter& operator=(Filter&& o) noexcept {
        if (this != &o) {
            serl_filter_free(handle_);
            handle_ = std::exchange(o.handle_, nullptr);
        }
        return *this;
    }
    ~Filter() { serl_filter_free(handle_); }

    /// Scores an instruction against the pool; kept ones join it.
    FilterVerdict offer(std::string_view instruction) {
        std::string s(instruction);
        FilterVerdict v;
        int64_t argmax = -1;
        detail::check(serl_filter_offer(handle_, s.c_str(), &v.kept, &v.max_rouge_l, &argmax));
        if (argmax >= 0) v.argmax = static_cast<size_t>(argmax);
        return v;
    }

private:
    serl_filter* handle_ = nullptr;
};

/// The figures of one training step (see serl_step_stats in serl.h).
using StepStats = serl_step_stats;
/// Accuracy on the evaluation set (see serl_eval_result in serl.h).
using EvalResult = serl_eval_result;

/// The SeRL trainer (RAII handle; movable, not copyable; one thread at a time).
class Trainer {
public:
    /// Loads the model and data named in a JSON configuration (the fields of
    /// `serl train`'s config file) and creates the run directory.
    explicit Trainer(std::string_view config_json) {
        std::string s(config_json);
        detail::check(serl_trainer_new(s.c_str(), &handle_));
    }
    /// Continues the run in `run_dir` from its latest checkpoint.
    static Trainer resume(std::string_view run_dir) {
        std::string s(run_dir);
        serl_trainer* h = nullptr;
        detail::check(serl_trainer_resume(s.c_str(), &h));
        return Trainer(h);
    }
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;
    Trainer(Trainer&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
    Trainer& operator=(Trainer&& o) noexcept {
        if (this != &o) {
            serl_trainer_free(handle_);
            handle_ = std::exchange(o.handle_, nullptr);
        }
        return *this;
    }
    ~Trainer() { serl_trainer_free(handle_); }

    /// One SeRL step: self-instruction, rollouts, vote, filters, update.
    StepStats step() {
        StepStats s{};
        detail::check(serl_step(handle_, &s));
        return s;
    }

    /// Up to `steps` steps; `on_step(stats)` after each returns false to stop.
    /// An exception thrown by `on_step` stops training and is rethrown here.
    void train(size_t steps, const std::function<bool(const StepStats&)>& on_step) {
        struct Ctx {
            const std::function<bool(const StepStats&)>* f;
            std::exception_ptr error;
        } ctx{&on_step, nullptr};
        auto trampoline = [](const serl_step_stats* s, void* ud) -> bool {
            auto* c = static_cast<Ctx*>(ud);
            try {
                return (*c->f)(*s);
            } catch (...) {
                c->error = std::current_exception();
                return false;
            }
        };
        serl_status st = serl_train(handle_, steps, trampoline, &ctx);
        if (ctx.error) std::rethrow_exception(ctx.error);
        detail::check(st);
    }

    /// Greedy pass@1, avg@k and maj@k on the configuration's eval_data.
    EvalResult evaluate() {
        EvalResult r{};
        detail::check(serl_evaluate(handle_, &r));
        return r;
    }

    /// Writes a checkpoint (Hugging Face format + optimizer and trainer
    /// state) into the run directory; returns its path.
    std::string save() {
        detail::CString dir;
        detail::check(serl_trainer_save(handle_, &dir.p));
        return dir.str();
    }

    /// Every step's full statistics so far, as a JSON array.
    std::string metrics_json() {
        detail::CString json;
        detail::check(serl_trainer_metrics_json(handle_, &json.p));
        return json.str();
    }

private:
    explicit Trainer(serl_trainer* h) : handle_(h) {}
    serl_trainer* handle_ = nullptr;
};

}  // namespace serl

#endif  // SERL_HPP
