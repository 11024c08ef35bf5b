/* Every toolkit function of libserl called from 8 threads at once for a few
 * seconds, valid and invalid inputs mixed: results must be right and each
 * thread's serl_last_error must be its own. Run under ThreadSanitizer by
 * the sanitizer build of scripts/test.sh.
 *
 *   test_threads [SECONDS]
 */
#include <serl.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 8

static atomic_int failures;
static atomic_long calls;
static double seconds = 2.0;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "thread %d, %s:%d: CHECK failed: %s (last error: %s)\n", id,    \
                    __FILE__, __LINE__, #cond, serl_last_error());                          \
            atomic_fetch_add(&failures, 1);                                                 \
            return;                                                                         \
        }                                                                                   \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The last error names this thread's own bad input, and a success clears it. */
static int error_mentions(const char *what) { return strstr(serl_last_error(), what) != NULL; }

static void round_of_calls(int id, unsigned round) {
    char buf[256], bad[64];
    char *a = NULL, *n = NULL;
    bool flag = false;
    /* Extraction: a number of this thread and round. */
    unsigned number = (unsigned)(id + 1) * 1000000u + round % 1000000u;
    snprintf(buf, sizeof buf, "so the answer is \\boxed{%u}.", number);
    CHECK(serl_extract_answer(buf, &a, &n) == SERL_OK);
    CHECK(strcmp(serl_last_error(), "") == 0);
    snprintf(bad, sizeof bad, "%u", number);
    CHECK(a && strcmp(a, bad) == 0 && n && strcmp(n, bad) == 0);
    serl_string_free(a);
    serl_string_free(n);
    CHECK(serl_extract_answer(NULL, &a, &n) == SERL_ERR_INVALID_ARGUMENT && error_mentions("response"));
    /* Equivalence, and a string that is not UTF-8. */
    CHECK(serl_answers_equal("\\frac{1}{2}", "0.5", &flag) == SERL_OK && flag);
    CHECK(serl_answers_equal("\xff\xfe", "1", &flag) == SERL_ERR_INVALID_ARGUMENT && error_mentions("pred"));
    /* The vote: three of four agree on this thread's number. */
    snprintf(buf, sizeof buf, "\\boxed{%d}", id + 10);
    const char *group[4] = {buf, buf, "\\boxed{-1}", buf};
    double rewards[4] = {0}, agreement = 0;
    char *majority = NULL;
    CHECK(serl_vote(group, 4, round % 2 ? SERL_VOTE_EQUIV : SERL_VOTE_STRING, rewards, &majority, &agreement) ==
          SERL_OK);
    snprintf(bad, sizeof bad, "%d", id + 10);
    CHECK(majority && strcmp(majority, bad) == 0 && agreement == 0.75 && rewards[2] == 0.0 && rewards[3] == 1.0);
    serl_string_free(majority);
    CHECK(serl_vote(group, 0, SERL_VOTE_STRING, rewards, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT);
    CHECK(serl_vote(group, 4, 7, rewards, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT && error_mentions("7"));
    /* ROUGE-L. */
    struct serl_rouge r;
    CHECK(serl_rouge_l("the cat sat on the mat", "the cat sat", &r) == SERL_OK && r.f > 0.6 && r.f < 0.7);
    CHECK(serl_rouge_l("a", "b", NULL) == SERL_ERR_INVALID_ARGUMENT);
    /* Instruction parsing and the rule filters. */
    char **items = NULL;
    size_t len = 0;
    CHECK(serl_parse_instructions("9. What is 2 plus 2?\n10. How many primes are below 20?", false, &items, &len) ==
          SERL_OK);
    CHECK(len == 2 && items && strcmp(items[1], "How many primes are below 20?") == 0);
    serl_string_array_free(items, len);
    /* The generation prompt. */
    const char *seeds[3] = {"What is 1 plus 1?", "What is 2 plus 3?", "How many sides has a hexagon?"};
    char *sys = NULL, *user = NULL;
    CHECK(serl_build_generation_prompt(seeds, 3, NULL, 0, 2, round, &sys, &user) == SERL_OK && sys && user);
    serl_string_free(sys);
    serl_string_free(user);
    CHECK(serl_build_generation_prompt(NULL, 3, NULL, 0, 2, round, &sys, &user) == SERL_ERR_INVALID_ARGUMENT &&
          error_mentions("seeds"));
    /* The difficulty filter. */
    CHECK(serl_difficulty_keep(0.5, 0.2, 0.8, &flag) == SERL_OK && flag);
    CHECK(serl_difficulty_keep(0.5, 0.9, 0.1, &flag) == SERL_ERR_INVALID_ARGUMENT);
    /* RL arithmetic: valid, then an estimator named after this thread. */
    char *json = NULL;
    CHECK(serl_advantages("{\"estimator\": \"reinforce\", \"kl_estimator\": \"k1\", \"kl_coef\": 0, "
                          "\"n_samples_per_prompt\": 2, \"action_mask\": [[1], [1]], \"rewards\": [1, 0], "
                          "\"log_probs\": [[0], [0]], \"ref_log_probs\": [[0], [0]]}",
                          &json) == SERL_OK);
    CHECK(json && strstr(json, "\"advantages\""));
    serl_string_free(json);
    snprintf(buf, sizeof buf, "{\"estimator\": \"bogus%d\"}", id);
    snprintf(bad, sizeof bad, "bogus%d", id);
    CHECK(serl_advantages(buf, &json) == SERL_ERR_BAD_DATA && error_mentions(bad));
    /* The diversity filter: a handle per thread; a double free is refused. */
    struct serl_filter *f = NULL;
    bool kept = false;
    CHECK(serl_filter_new(seeds, 3, 0.7, &f) == SERL_OK);
    CHECK(serl_filter_offer(f, "What is 1 plus 1?", &kept, NULL, NULL) == SERL_OK && !kept);
    CHECK(serl_filter_offer(f, "Name a prime larger than one hundred.", &kept, NULL, NULL) == SERL_OK && kept);
    serl_filter_free(f);
    CHECK(strcmp(serl_last_error(), "") == 0);
    if (round % 16 == 0) {
        serl_filter_free(f);
        CHECK(error_mentions("not a live handle"));
        CHECK(serl_filter_offer(f, "x", &kept, NULL, NULL) == SERL_ERR_INVALID_ARGUMENT);
    }
    CHECK(strcmp(serl_version(), "") != 0);
    atomic_fetch_add(&calls, 25);
}

static void *worker(void *arg) {
    int id = (int)(size_t)arg;
    double end = now() + seconds;
    unsigned round = 0;
    while (now() < end && atomic_load(&failures) == 0) round_of_calls(id, round++);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) seconds = atof(argv[1]);
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) return 2;
    for (size_t i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    int f = atomic_load(&failures);
    printf("%d threads, %.1f s: %ld calls, %d failures\n", THREADS, seconds, atomic_load(&calls), f);
    return f == 0 ? 0 : 1;
}
