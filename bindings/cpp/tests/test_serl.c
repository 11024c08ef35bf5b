/* The C API from C11, built with -Wall -Wextra -pedantic -Werror. */
#include <serl.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, serl_last_error());                         \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static void test_extract_and_equal(void) {
    char *answer = NULL, *normalized = NULL;
    bool eq = false;
    CHECK(serl_extract_answer("so $x = \\boxed{\\dfrac{1}{2}}$.", &answer, &normalized) == SERL_OK);
    CHECK(answer && strcmp(answer, "\\frac{1}{2}") == 0);
    CHECK(normalized && strcmp(normalized, "\\frac{1}{2}") == 0);
    serl_string_free(answer);
    serl_string_free(normalized);
    /* Reference quirk: a unit letter is removed as a whole token. */
    CHECK(serl_extract_answer("\\boxed{5 m}", &answer, &normalized) == SERL_OK);
    CHECK(strcmp(answer, "5") == 0);
    serl_string_free(answer);
    serl_string_free(normalized);
    CHECK(serl_answers_equal("\\frac{1}{2}", "0.5", &eq) == SERL_OK && eq);
    CHECK(serl_answers_equal("50", "0.5", &eq) == SERL_OK && !eq);
}

static void test_vote(void) {
    const char *group[] = {"\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "\\boxed{50\\%}", "\\boxed{1/2}"};
    double rewards[4] = {0};
    char *majority = NULL;
    double agreement = 0;
    /* vote.jsonl, line 4 (first four responses): string vs equivalence. */
    CHECK(serl_vote(group, 4, SERL_VOTE_STRING, rewards, &majority, &agreement) == SERL_OK);
    CHECK(rewards[0] == 0.0 && rewards[1] == 1.0 && rewards[2] == 0.0 && rewards[3] == 1.0);
    CHECK(majority && strcmp(majority, "\\frac{1}{2}") == 0);
    CHECK(fabs(agreement - 0.5) < 1e-12);
    serl_string_free(majority);
    CHECK(serl_vote(group, 4, SERL_VOTE_EQUIV, rewards, NULL, &agreement) == SERL_OK);
    CHECK(rewards[0] == 1.0 && rewards[1] == 1.0 && rewards[2] == 1.0 && rewards[3] == 1.0);
    CHECK(agreement == 1.0);
}

static void test_errors(void) {
    double rewards[2] = {7.0, 7.0};
    const char *with_null[] = {"a", NULL};
    char *answer = NULL;
    bool keep = true;
    CHECK(serl_vote(NULL, 2, SERL_VOTE_STRING, rewards, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(strstr(serl_last_error(), "responses is NULL") != NULL);
    CHECK(serl_vote(with_null, 2, SERL_VOTE_STRING, rewards, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(strstr(serl_last_error(), "responses[1]") != NULL);
    CHECK(rewards[0] == 7.0 && rewards[1] == 7.0);
    CHECK(serl_vote(with_null, 0, SERL_VOTE_STRING, rewards, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(serl_vote(with_null, 1, 42, rewards, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(serl_extract_answer("\xff\xfe", &answer, &answer) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(answer == NULL);
    CHECK(serl_difficulty_keep(0.5, 0.8, 0.2, &keep) == SERL_ERR_INVALID_ARGUMENT && keep);
    CHECK(serl_difficulty_keep(0.25, 0.2, 0.8, &keep) == SERL_OK && keep);
    CHECK(serl_difficulty_keep(0.8125, 0.2, 0.8, &keep) == SERL_OK && !keep);
    CHECK(strcmp(serl_last_error(), "") == 0);
    serl_string_free(NULL);
    serl_filter_free(NULL);
    serl_string_array_free(NULL, 3);
}

static void test_instructions_filter_prompt(void) {
    const char *seeds[] = {"How many primes are below 20?", "What is the area of a unit circle?"};
    char **items = NULL;
    size_t len = 0;
    serl_filter *f = NULL;
    bool kept = false;
    double max = 0;
    int64_t argmax = -2;
    char *system = NULL, *user = NULL;
    serl_rouge r;

    CHECK(serl_parse_instructions("1. What is the sum of 2 and 3 apples?\n2. Draw a graph of y = x now\n3. Find X if X plus 2 is 5",
                                  false, &items, &len) == SERL_OK);
    CHECK(len == 2 && strcmp(items[0], "What is the sum of 2 and 3 apples?") == 0 &&
          strcmp(items[1], "Find x if x plus 2 is 5") == 0);
    serl_string_array_free(items, len);

    CHECK(serl_filter_new(seeds, 2, 0.7, &f) == SERL_OK);
    CHECK(serl_filter_offer(f, "How many primes are below 30?", &kept, &max, &argmax) == SERL_OK);
    CHECK(!kept && max > 0.7 && argmax == 0);
    CHECK(serl_filter_offer(f, "Compute the derivative of x cubed", &kept, NULL, &argmax) == SERL_OK);
    CHECK(kept);
    CHECK(serl_filter_offer(f, "Compute the derivative of x cubed please", &kept, &max, &argmax) == SERL_OK);
    CHECK(!kept && argmax == 2); /* the instruction kept just before */
    serl_filter_free(f);
    CHECK(serl_filter_new(seeds, 2, 1.5, &f) == SERL_ERR_INVALID_ARGUMENT);

    CHECK(serl_build_generation_prompt(seeds, 2, NULL, 0, 8, 7, &system, &user) == SERL_OK);
    CHECK(strncmp(system, "Please act as a professional math teacher.", 42) == 0);
    CHECK(strncmp(user, "Come up with a series of questions:\n1. ", 39) == 0);
    CHECK(strcmp(user + strlen(user) - 3, "\n3.") == 0);
    serl_string_free(system);
    serl_string_free(user);

    CHECK(serl_rouge_l("the cat sat", "the cat", &r) == SERL_OK);
    CHECK(r.p == 1.0 && fabs(r.r - 2.0 / 3.0) < 1e-15 && fabs(r.f - 0.8) < 1e-15);
}

static void test_trainer_errors(void) {
    serl_trainer *t = NULL;
    serl_step_stats stats;
    serl_eval_result er;
    char *json = NULL;
    CHECK(serl_step(NULL, &stats) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(strstr(serl_last_error(), "trainer is NULL") != NULL);
    CHECK(serl_evaluate(NULL, &er) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(serl_trainer_metrics_json(NULL, &json) == SERL_ERR_INVALID_ARGUMENT && json == NULL);
    CHECK(serl_trainer_new(NULL, &t) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(serl_trainer_new("{not json", &t) == SERL_ERR_BAD_DATA && t == NULL);
    CHECK(strstr(serl_last_error(), "config") != NULL);
    CHECK(serl_trainer_new("{\"model\": \"/nonexistent\", \"seeds\": \"x\"}", &t) == SERL_ERR_BAD_DATA);
    CHECK(strstr(serl_last_error(), "model") != NULL && t == NULL);
    CHECK(serl_trainer_new("{\"steps\": \"three\"}", &t) == SERL_ERR_BAD_DATA);
    CHECK(strstr(serl_last_error(), "steps") != NULL || strstr(serl_last_error(), "invalid type") != NULL);
    CHECK(serl_trainer_resume("/nonexistent/run", &t) == SERL_ERR_IO && t == NULL);
    serl_trainer_free(NULL);
}

int main(void) {
    CHECK(strlen(serl_version()) > 0);
    test_extract_and_equal();
    test_vote();
    test_errors();
    test_instructions_filter_prompt();
    test_trainer_errors();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("C API: all checks passed\n");
    return 0;
}
