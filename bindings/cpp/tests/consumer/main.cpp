// Links against an installed libserl (find_package) and votes once.
#include <serl.hpp>

#include <iostream>
#include <vector>

int main() {
    std::vector<std::string> group{"\\boxed{12}", "The answer is 12.", "\\boxed{13}"};
    auto v = serl::vote(group, serl::VoteMode::Equiv);
    std::cout << "majority " << v.majority << " agreement " << v.agreement << "\n";
    return v.majority == "12" && v.rewards[2] == 0.0 ? 0 : 1;
}
