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
