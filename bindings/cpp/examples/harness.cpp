// A training harness's reward step with libserl: the host samples 16
// responses per generated question (here: canned samples), libserl votes,
// the difficulty filter decides which groups train, and the diversity filter
// screens the next batch of generated questions.
#include <serl.hpp>

#include <iostream>
#include <string>
#include <vector>

int main() {
    struct Group {
        std::string question;
        std::vector<std::string> samples;
    };
    auto samples = [](std::vector<std::pair<std::string, int>> counts) {
        std::vector<std::string> out;
        for (auto& [answer, n] : counts)
            for (int i = 0; i < n; ++i) out.push_back("Working it out step by step, the result is $\\boxed{" + answer + "}$.");
        return out;
    };
    std::vector<Group> groups{
        {"What is 17 * 23?", samples({{"391", 9}, {"381", 4}, {"401", 3}})},
        {"What is 2 + 2?", samples({{"4", 16}})},
        {"How many primes are below 100?", samples({{"25", 3}, {"24", 3}, {"26", 2}, {"23", 2}, {"27", 2}, {"22", 2}, {"21", 2}})},
    };
    int kept = 0;
    for (const auto& g : groups) {
        auto v = serl::vote(g.samples, serl::VoteMode::Equiv);
        bool keep = serl::difficulty_keep(v.agreement, 0.2, 0.8);
        kept += keep;
        std::cout << g.question << "  majority=" << v.majority << "  agreement=" << v.agreement
                  << (keep ? "  -> train" : "  -> skip (too easy or too hard)") << "\n";
    }
    serl::Filter filter(std::vector<std::string>{"What is 17 * 23?", "How many primes are below 100?"});
    for (const auto& q : serl::parse_instructions("1. What is 17 * 24 in total?\n2. How many ways can 5 books be arranged on a shelf?"))
        std::cout << (filter.offer(q).kept ? "keep  " : "drop  ") << q << "\n";
    if (kept != 1) {
        std::cerr << "expected exactly one group in the difficulty band, got " << kept << "\n";
        return 1;
    }
    return 0;
}
