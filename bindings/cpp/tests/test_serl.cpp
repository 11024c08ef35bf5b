// The C++ wrapper: results, RAII ownership and exceptions.
#include <serl.hpp>

#include <array>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

static int failures = 0;
#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond "\n"; \
            ++failures;                                                                \
        }                                                                              \
    } while (0)

int main() {
    // Extraction and equivalence (extract.jsonl / equal.jsonl cases).
    auto a = serl::extract_answer("Solving yields $h = \\boxed{1}$ foot.");
    CHECK(a.answer == "1" && a.normalized == "1");
    CHECK(serl::answers_equal("\\frac{1}{2}", "0.5"));
    CHECK(!serl::answers_equal("50", "0.5"));
    CHECK(serl::answers_equal("2x+3", "y=2x+3"));

    // vote.jsonl line 2: alternating answers, ties go to the first seen.
    std::vector<std::string> group;
    for (int i = 0; i < 16; ++i) group.push_back(i % 2 ? "\\boxed{2}" : "\\boxed{1}");
    for (auto mode : {serl::VoteMode::String, serl::VoteMode::Equiv}) {
        auto v = serl::vote(group, mode);
        CHECK(v.rewards.size() == 16);
        CHECK(v.rewards[0] == 1.0 && v.rewards[1] == 0.0);
        CHECK(v.majority == "1");
        CHECK(v.agreement == 0.5);
        CHECK(serl::difficulty_keep(v.agreement));
    }
    // string_view ranges work too.
    std::array<std::string_view, 3> views{"\\boxed{7}", "\\boxed{7}", "\\boxed{8}"};
    CHECK(serl::vote(views).majority == "7");

    // Errors are exceptions with the status and message.
    try {
        serl::vote(std::vector<std::string>{});
        CHECK(false);
    } catch (const serl::Error& e) {
        CHECK(e.status() == SERL_ERR_INVALID_ARGUMENT);
        CHECK(std::string(e.what()).find("empty") != std::string::npos);
    }
    try {
        serl::difficulty_keep(0.5, 0.9, 0.1);
        CHECK(false);
    } catch (const serl::Error& e) {
        CHECK(e.status() == SERL_ERR_INVALID_ARGUMENT);
    }

    // Instructions, filter (moved between owners), prompt.
    auto items = serl::parse_instructions("1. What is \\Delta X of the set?\n2. Plot y = x for me please", false);
    CHECK(items.size() == 1 && items[0] == "What is \\delta x of the set?");
    auto kept_case = serl::parse_instructions("1. What is \\Delta X of the set?", true);
    CHECK(kept_case.size() == 1 && kept_case[0] == "What is \\Delta X of the set?");

    std::vector<std::string> seeds{"How many primes are below 20?", "What is the area of a unit circle?"};
    serl::Filter f(seeds, 0.7);
    auto v1 = f.offer("How many primes are below 30?");
    CHECK(!v1.kept && v1.max_rouge_l > 0.7 && v1.argmax == 0u);
    serl::Filter g(std::move(f));
    CHECK(g.offer("Compute the derivative of x cubed").kept);
    try {
        f.offer("anything at all here");  // moved-from: the handle is gone
        CHECK(false);
    } catch (const serl::Error& e) {
        CHECK(e.status() == SERL_ERR_INVALID_ARGUMENT);
    }
    auto p = serl::build_generation_prompt(seeds, std::vector<std::string>{"A kept question about primes"}, 8, 3);
    CHECK(p.user.find("A kept question about primes") != std::string::npos);
    CHECK(p.user.substr(p.user.size() - 3) == "\n4.");

    auto r = serl::rouge_l("the cat sat", "the cat");
    CHECK(r.p == 1.0 && std::fabs(r.r - 2.0 / 3.0) < 1e-15);
    CHECK(!serl::version().empty());

    if (failures) {
        std::cerr << failures << " check(s) failed\n";
        return 1;
    }
    std::cout << "C++ API: all checks passed\n";
    return 0;
}
