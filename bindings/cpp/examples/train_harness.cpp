// A C++ host training a model with libserl's SeRL trainer: three steps on a
// tiny model, a checkpoint, a resume, one more step and an evaluation.
//
//   train_harness MODEL_DIR SEEDS_JSONL RUN_DIR
#include <serl.hpp>

#include <iostream>
#include <string>

// A JSON string literal for a path.
static std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: train_harness MODEL_DIR SEEDS_JSONL RUN_DIR\n";
        return 2;
    }
    const std::string config = R"({"model": )" + quote(argv[1]) + R"(, "seeds": )" + quote(argv[2]) +
                               R"(, "eval_data": )" + quote(argv[2]) + R"(, "out": )" + quote(argv[3]) + R"(,
        "steps": 4, "self_instruct": false, "rollout_batch_size": 2, "n_samples_per_prompt": 4,
        "generate_max_len": 6, "input_template": "{problem}", "reward_difficulty_bounds": [0.0, 1.0],
        "train_batch_size": 8, "micro_train_batch_size": 4, "actor_learning_rate": 0.001,
        "eval_k": 2, "eval_max_len": 4})";
    try {
        serl::Trainer trainer(config);
        trainer.train(3, [](const serl::StepStats& s) {
            std::cout << "step " << s.step << ": reward " << s.reward_mean << ", kept " << s.kept << " groups, loss "
                      << s.loss << ", lr " << s.lr << ", " << s.tokens_per_s << " tok/s\n";
            return true;
        });
        std::string ck = trainer.save();
        std::cout << "checkpoint " << ck << "\n";
        serl::Trainer resumed = serl::Trainer::resume(argv[3]);
        serl::StepStats s = resumed.step();
        if (s.step != 4) {
            std::cerr << "resumed at the wrong step: " << s.step << "\n";
            return 1;
        }
        serl::EvalResult e = resumed.evaluate();
        std::cout << "eval: pass@1 " << e.pass_at_1 << ", maj@" << e.k << " " << e.maj_at_k << " over " << e.questions
                  << " questions\n";
        std::string metrics = resumed.metrics_json();
        if (metrics.empty() || metrics.front() != '[' || metrics.find(R"("step":4)") == std::string::npos) {
            std::cerr << "metrics JSON lacks step 4: " << metrics.substr(0, 200) << "\n";
            return 1;
        }
        // A bad configuration is a serl::Error naming the field.
        try {
            serl::Trainer bad(R"({"model": "/nonexistent", "seeds": "x"})");
            std::cerr << "bad config accepted\n";
            return 1;
        } catch (const serl::Error& err) {
            if (err.status() != SERL_ERR_BAD_DATA || std::string(err.what()).find("model") == std::string::npos) {
                std::cerr << "unexpected error: " << err.what() << "\n";
                return 1;
            }
        }
    } catch (const serl::Error& e) {
        std::cerr << "libserl error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
    std::cout << "trainer harness: OK\n";
    return 0;
}
