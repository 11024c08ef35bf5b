// Package serl is libserl for Go: SeRL's evaluator (answer extraction,
// math_verify equivalence, majority-vote rewards, ROUGE-L, instruction
// parsing and the diversity filter) through cgo, linked against libserl.a.
//
// Build libserl first: `cargo build --release -p serl-ffi` at the repository
// root. Every function is safe for concurrent use; a Filter is not (use one
// per goroutine, or guard it).
package serl

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libserl.a -lpthread -ldl -lm
#include <stdlib.h>
#include <serl.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Mode selects how Vote groups answers.
type Mode uint32

const (
	// ModeString compares normalised answer strings (SeRL's string-majority reward).
	ModeString Mode = C.SERL_VOTE_STRING
	// ModeEquiv compares answers by mathematical equivalence, as math_verify does.
	ModeEquiv Mode = C.SERL_VOTE_EQUIV
)

// Status codes of libserl (Error.Status).
const (
	StatusInvalidArgument = C.SERL_ERR_INVALID_ARGUMENT
	StatusBadData         = C.SERL_ERR_BAD_DATA
	StatusIO              = C.SERL_ERR_IO
	StatusRuntime         = C.SERL_ERR_RUNTIME
	StatusPanic           = C.SERL_ERR_PANIC
)

// Error is a failed libserl call: its status and message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("serl: %s (status %d)", e.Message, e.Status) }

// call runs one C call and reads libserl's thread-local error message on the
// same OS thread.
func call(f func() C.serl_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if st := f(); st != C.SERL_OK {
		return &Error{Status: int(st), Message: C.GoString(C.serl_last_error())}
	}
	return nil
}

// cStrings copies Go strings into C memory; free releases them.
type cStrings struct {
	ptrs **C.char
	n    int
}

func newCStrings(items []string) cStrings {
	if len(items) == 0 {
		return cStrings{}
	}
	ptrs := (**C.char)(C.malloc(C.size_t(len(items)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	view := unsafe.Slice(ptrs, len(items))
	for i, s := range items {
		view[i] = C.CString(s)
	}
	return cStrings{ptrs: ptrs, n: len(items)}
}

func (c cStrings) free() {
	if c.ptrs == nil {
		return
	}
	for _, p := range unsafe.Slice(c.ptrs, c.n) {
		C.free(unsafe.Pointer(p))
	}
	C.free(unsafe.Pointer(c.ptrs))
}

// takeString copies a string returned by libserl and frees it.
func takeString(p *C.char) string {
	s := C.GoString(p)
	C.serl_string_free(p)
	return s
}

// Version is libserl's version.
func Version() string { return C.GoString(C.serl_version()) }

// ExtractAnswer returns a response's final answer as SeRL extracts it, and
// that answer normalised once more (what the string vote compares).
func ExtractAnswer(response string) (answer, normalized string, err error) {
	cr := C.CString(response)
	defer C.free(unsafe.Pointer(cr))
	var a, n *C.char
	if err = call(func() C.serl_status { return C.serl_extract_answer(cr, &a, &n) }); err != nil {
		return "", "", err
	}
	return takeString(a), takeString(n), nil
}

// Equal reports whether pred is equivalent to ref as math_verify decides it
// for SeRL's majority reward (ref is the gold answer; either direction passes).
func Equal(pred, ref string) (bool, error) {
	cp, cr := C.CString(pred), C.CString(ref)
	defer C.free(unsafe.Pointer(cp))
	defer C.free(unsafe.Pointer(cr))
	var eq C.bool
	err := call(func() C.serl_status { return C.serl_answers_equal(cp, cr, &eq) })
	return bool(eq), err
}

// VoteResult is the outcome of a majority vote.
type VoteResult struct {
	Rewards   []float64 // 1.0 in the majority cluster, else 0.0
	Majority  string    // the majority answer
	Agreement float64   // mean reward
}

// Vote is SeRL's majority-vote self-reward over a group of responses.
func Vote(responses []string, mode Mode) (VoteResult, error) {
	cs := newCStrings(responses)
	defer cs.free()
	rewards := make([]float64, len(responses))
	var rewardsPtr *C.double
	if len(rewards) > 0 {
		rewardsPtr = (*C.double)(unsafe.Pointer(&rewards[0]))
	}
	var majority *C.char
	var agreement C.double
	err := call(func() C.serl_status {
		return C.serl_vote(cs.ptrs, C.size_t(len(responses)), C.serl_vote_mode(mode), rewardsPtr, &majority, &agreement)
	})
	if err != nil {
		return VoteResult{}, err
	}
	return VoteResult{Rewards: rewards, Majority: takeString(majority), Agreement: float64(agreement)}, nil
}

// Rouge is ROUGE-L of a prediction against a target.
type Rouge struct{ F, P, R float64 }

// RougeL computes ROUGE-L (rouge_score semantics) of prediction against target.
func RougeL(target, prediction string) (Rouge, error) {
	ct, cp := C.CString(target), C.CString(prediction)
	defer C.free(unsafe.Pointer(ct))
	defer C.free(unsafe.Pointer(cp))
	var r C.serl_rouge
	err := call(func() C.serl_status { return C.serl_rouge_l(ct, cp, &r) })
	return Rouge{F: float64(r.f), P: float64(r.p), R: float64(r.r)}, err
}

// ParseInstructions splits a generated numbered list into questions and
// applies SeRL's rule filters; keepCase false reproduces the reference's
// capitalize().
func ParseInstructions(response string, keepCase bool) ([]string, error) {
	cr := C.CString(response)
	defer C.free(unsafe.Pointer(cr))
	var items **C.char
	var n C.size_t
	if err := call(func() C.serl_status { return C.serl_parse_instructions(cr, C.bool(keepCase), &items, &n) }); err != nil {
		return nil, err
	}
	defer C.serl_string_array_free(items, n)
	out := make([]string, 0, int(n))
	if n > 0 {
		for _, p := range unsafe.Slice(items, int(n)) {
			out = append(out, C.GoString(p))
		}
	}
	return out, nil
}

// DifficultyKeep reports whether lo <= agreement <= hi (SeRL: 0.2 and 0.8).
func DifficultyKeep(agreement, lo, hi float64) (bool, error) {
	var keep C.bool
	err := call(func() C.serl_status {
		return C.serl_difficulty_keep(C.double(agreement), C.double(lo), C.double(hi), &keep)
	})
	return bool(keep), err
}

// Verdict is the diversity filter's answer for one instruction.
type Verdict struct {
	Kept      bool    // joined the pool
	MaxRougeL float64 // highest ROUGE-L F against the pool
	Argmax    int     // its pool index (seeds first), -1 for an empty pool
}

// Filter is SeRL's diversity filter. Close it when done.
type Filter struct {
	h *C.serl_filter
}

// NewFilter starts a pool with the seed instructions; an instruction whose
// ROUGE-L F against any pool entry is above threshold (SeRL: 0.7) is rejected.
func NewFilter(seeds []string, threshold float64) (*Filter, error) {
	cs := newCStrings(seeds)
	defer cs.free()
	var h *C.serl_filter
	if err := call(func() C.serl_status {
		return C.serl_filter_new(cs.ptrs, C.size_t(len(seeds)), C.double(threshold), &h)
	}); err != nil {
		return nil, err
	}
	f := &Filter{h: h}
	runtime.SetFinalizer(f, (*Filter).Close)
	return f, nil
}

// Offer scores an instruction against the pool; kept ones join it.
func (f *Filter) Offer(instruction string) (Verdict, error) {
	if f == nil || f.h == nil {
		return Verdict{}, &Error{Status: StatusInvalidArgument, Message: "filter is closed"}
	}
	ci := C.CString(instruction)
	defer C.free(unsafe.Pointer(ci))
	var kept C.bool
	var max C.double
	var argmax C.int64_t
	err := call(func() C.serl_status { return C.serl_filter_offer(f.h, ci, &kept, &max, &argmax) })
	return Verdict{Kept: bool(kept), MaxRougeL: float64(max), Argmax: int(argmax)}, err
}

// Close frees the filter; it is safe to call more than once.
func (f *Filter) Close() {
	if f != nil && f.h != nil {
		C.serl_filter_free(f.h)
		f.h = nil
	}
}

// Stats are the headline figures of one training step (the full record is a
// line of metrics.jsonl in the run directory, and in MetricsJSON).
type Stats struct {
	Step                int
	RewardMean          float64
	AgreementMean       float64
	Generated           int
	RuleFiltered        int
	SimilarityFiltered  int
	DifficultyFiltered  int
	Kept                int
	LabelAccuracy       float64 // NaN when the instructions carry no labels
	KeptLabelAccuracy   float64 // the same over the groups trained on; NaN without labels
	KL                  float64
	Loss                float64
	LR                  float64
	GradNorm            float64
	LogRatioAbsMean     float64 // mean |log(π/π_old)| per response token
	ClipFraction        float64 // share of response tokens whose ratio was clipped
	TokensPerSecond     float64
	SecondsInstructions float64
	SecondsRollout      float64
	SecondsScoring      float64
	SecondsFiltering    float64
	SecondsUpdate       float64
}

// EvalResult is the accuracy on the configuration's eval_data.
type EvalResult struct {
	Step, Questions, K      int
	PassAt1, AvgAtK, MajAtK float64 // AvgAtK and MajAtK are NaN when K is 0
}

// Trainer is libserl's SeRL trainer. Use it from one goroutine at a time;
// Close it when done.
type Trainer struct {
	h *C.serl_trainer
}

func newTrainer(h *C.serl_trainer) *Trainer {
	t := &Trainer{h: h}
	runtime.SetFinalizer(t, (*Trainer).Close)
	return t
}

// NewTrainer loads the model and data named by a JSON configuration (the
// fields of `serl train`'s config file) and creates the run directory.
func NewTrainer(configJSON string) (*Trainer, error) {
	c := C.CString(configJSON)
	defer C.free(unsafe.Pointer(c))
	var h *C.serl_trainer
	if err := call(func() C.serl_status { return C.serl_trainer_new(c, &h) }); err != nil {
		return nil, err
	}
	return newTrainer(h), nil
}

// ResumeTrainer continues the run in runDir from its latest checkpoint.
func ResumeTrainer(runDir string) (*Trainer, error) {
	c := C.CString(runDir)
	defer C.free(unsafe.Pointer(c))
	var h *C.serl_trainer
	if err := call(func() C.serl_status { return C.serl_trainer_resume(c, &h) }); err != nil {
		return nil, err
	}
	return newTrainer(h), nil
}

func (t *Trainer) handle() (*C.serl_trainer, error) {
	if t == nil || t.h == nil {
		return nil, &Error{Status: StatusInvalidArgument, Message: "trainer is closed"}
	}
	return t.h, nil
}

// Step runs one SeRL step: self-instruction, rollouts, majority vote,
// filters and the policy update.
func (t *Trainer) Step() (Stats, error) {
	h, err := t.handle()
	if err != nil {
		return Stats{}, err
	}
	var s C.serl_step_stats
	if err := call(func() C.serl_status { return C.serl_step(h, &s) }); err != nil {
		return Stats{}, err
	}
	return Stats{
		Step: int(s.step), RewardMean: float64(s.reward_mean), AgreementMean: float64(s.agreement_mean),
		Generated: int(s.generated), RuleFiltered: int(s.rule_filtered), SimilarityFiltered: int(s.similarity_filtered),
		DifficultyFiltered: int(s.difficulty_filtered), Kept: int(s.kept), LabelAccuracy: float64(s.label_accuracy),
		KeptLabelAccuracy: float64(s.kept_label_accuracy), KL: float64(s.kl), Loss: float64(s.loss), LR: float64(s.lr),
		GradNorm: float64(s.grad_norm), LogRatioAbsMean: float64(s.log_ratio_abs_mean), ClipFraction: float64(s.clip_fraction),
		TokensPerSecond: float64(s.tokens_per_s), SecondsInstructions: float64(s.seconds_instruction_generation),
		SecondsRollout: float64(s.seconds_rollout), SecondsScoring: float64(s.seconds_scoring),
		SecondsFiltering: float64(s.seconds_filtering), SecondsUpdate: float64(s.seconds_update),
	}, nil
}

// Evaluate measures greedy pass@1, avg@k and maj@k on the eval_data.
func (t *Trainer) Evaluate() (EvalResult, error) {
	h, err := t.handle()
	if err != nil {
		return EvalResult{}, err
	}
	var r C.serl_eval_result
	if err := call(func() C.serl_status { return C.serl_evaluate(h, &r) }); err != nil {
		return EvalResult{}, err
	}
	return EvalResult{Step: int(r.step), Questions: int(r.questions), K: int(r.k),
		PassAt1: float64(r.pass_at_1), AvgAtK: float64(r.avg_at_k), MajAtK: float64(r.maj_at_k)}, nil
}

// Save writes a checkpoint into the run directory and returns its path.
func (t *Trainer) Save() (string, error) {
	h, err := t.handle()
	if err != nil {
		return "", err
	}
	var dir *C.char
	if err := call(func() C.serl_status { return C.serl_trainer_save(h, &dir) }); err != nil {
		return "", err
	}
	return takeString(dir), nil
}

// MetricsJSON returns every step's full statistics so far as a JSON array.
func (t *Trainer) MetricsJSON() (string, error) {
	h, err := t.handle()
	if err != nil {
		return "", err
	}
	var js *C.char
	if err := call(func() C.serl_status { return C.serl_trainer_metrics_json(h, &js) }); err != nil {
		return "", err
	}
	return takeString(js), nil
}

// Close frees the trainer; it is safe to call more than once.
func (t *Trainer) Close() {
	if t != nil && t.h != nil {
		C.serl_trainer_free(t.h)
		t.h = nil
	}
}
