package serl

import (
	"errors"
	"fmt"
	str "strings"
	"sync"
	"testing"
)

// Every toolkit function from 8 goroutines at once, valid and invalid
// inputs mixed: results stay right and each error is the caller's own
// (scripts/test.sh runs the Go tests with -race).
func TestToolkitFromManyGoroutines(t *testing.T) {
	const goroutines, rounds = 8, 300
	seeds := []string{"What is 1 plus 1?", "What is 2 plus 3?", "How many sides has a hexagon?"}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			fail := func(format string, args ...interface{}) {
				errs <- fmt.Errorf("goroutine %d: "+format, append([]interface{}{g}, args...)...)
			}
			for r := 0; r < rounds; r++ {
				n := fmt.Sprint((g+1)*1000000 + r)
				a, norm, err := ExtractAnswer("so the answer is \\boxed{" + n + "}.")
				if err != nil || a != n || norm != n {
					fail("extract %q: %q %q %v", n, a, norm, err)
					return
				}
				if eq, err := Equal("\\frac{1}{2}", "0.5"); err != nil || !eq {
					fail("equal: %v %v", eq, err)
					return
				}
				mine := fmt.Sprint(g + 10)
				group := []string{"\\boxed{" + mine + "}", "\\boxed{" + mine + "}", "\\boxed{-1}", "\\boxed{" + mine + "}"}
				mode := ModeString
				if r%2 == 1 {
					mode = ModeEquiv
				}
				v, err := Vote(group, mode)
				if err != nil || v.Majority != mine || v.Agreement != 0.75 {
					fail("vote: %+v %v", v, err)
					return
				}
				// An error names this goroutine's own bad input.
				bad := fmt.Sprintf("mode %d", 100+g)
				var e *Error
				if _, err := Vote(group, Mode(100+g)); !errors.As(err, &e) || !str.Contains(e.Message, fmt.Sprint(100+g)) {
					fail("bad %s: %v", bad, err)
					return
				}
				if rl, err := RougeL("the cat sat on the mat", "the cat sat"); err != nil || rl.F <= 0.6 || rl.F >= 0.7 {
					fail("rouge: %+v %v", rl, err)
					return
				}
				items, err := ParseInstructions("9. What is 2 plus 2?\n10. How many primes are below 20?", false)
				if err != nil || len(items) != 2 {
					fail("parse: %v %v", items, err)
					return
				}
				if _, err := DifficultyKeep(0.5, 0.9, 0.1); !errors.As(err, &e) || e.Status != StatusInvalidArgument {
					fail("difficulty: %v", err)
					return
				}
				f, err := NewFilter(seeds, 0.7)
				if err != nil {
					fail("filter: %v", err)
					return
				}
				if v, err := f.Offer("Name a prime larger than one hundred."); err != nil || !v.Kept {
					fail("offer: %+v %v", v, err)
					return
				}
				f.Close()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
