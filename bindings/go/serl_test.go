package serl

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
)

const fixtures = "../../serl-core/tests/fixtures/"

// eachLine decodes every JSON line of a reference vector file.
func eachLine(t *testing.T, name string, f func(line int, v map[string]interface{})) {
	t.Helper()
	file, err := os.Open(fixtures + name)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	n := 0
	for sc.Scan() {
		n++
		var v map[string]interface{}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s:%d: %v", name, n, err)
		}
		f(n, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("%s: no cases", name)
	}
}

func strings(v interface{}) []string {
	var out []string
	for _, x := range v.([]interface{}) {
		out = append(out, x.(string))
	}
	return out
}

func floats(v interface{}) []float64 {
	var out []float64
	for _, x := range v.([]interface{}) {
		out = append(out, x.(float64))
	}
	return out
}

func TestExtractMatchesTheReference(t *testing.T) {
	eachLine(t, "extract.jsonl", func(n int, v map[string]interface{}) {
		a, s, err := ExtractAnswer(v["input"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if a != v["extracted"] || s != v["stripped"] {
			t.Errorf("extract.jsonl:%d: got %q/%q want %q/%q", n, a, s, v["extracted"], v["stripped"])
		}
	})
}

// The string vote against SeRL's vectors (vote.jsonl), the equivalence vote
// against math_verify 0.8.0's rewards on the same groups (vote_mv08.jsonl).
func TestVoteMatchesTheReferenceInBothModes(t *testing.T) {
	for mode, file := range map[Mode]string{ModeString: "vote.jsonl", ModeEquiv: "vote_mv08.jsonl"} {
		key := "rewards_math_verify_maj"
		if mode == ModeString {
			key = "rewards_string_maj"
		}
		eachLine(t, file, func(n int, v map[string]interface{}) {
			r, err := Vote(strings(v["responses"]), mode)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Rewards, floats(v[key])) {
				t.Errorf("%s:%d mode %d: rewards %v want %v", file, n, mode, r.Rewards, v[key])
			}
			sum := 0.0
			for _, x := range r.Rewards {
				sum += x
			}
			if r.Agreement != sum/float64(len(r.Rewards)) {
				t.Errorf("%s:%d: agreement %v is not the mean reward", file, n, r.Agreement)
			}
		})
	}
}

func TestEqualAgreesWithMathVerify(t *testing.T) {
	total, same := 0, 0
	eachLine(t, "equal.jsonl", func(n int, v map[string]interface{}) {
		want, ok := v["math_verify"].(bool)
		if !ok {
			return // the reference timed out on this pair
		}
		got, err := Equal(v["pred"].(string), v["ref"].(string))
		if err != nil {
			t.Fatal(err)
		}
		total++
		if got == want {
			same++
		} else {
			t.Logf("equal.jsonl:%d: got %v want %v", n, got, want)
		}
	})
	if float64(same) < 0.97*float64(total) {
		t.Errorf("agreement %d/%d below 97%%", same, total)
	}
}

func TestParseInstructionsMatchesTheReference(t *testing.T) {
	eachLine(t, "postprocess.jsonl", func(n int, v map[string]interface{}) {
		got, err := ParseInstructions(v["response"].(string), false)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{}
		if v["instructions"] != nil {
			want = append(want, strings(v["instructions"])...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("postprocess.jsonl:%d: got %q want %q", n, got, want)
		}
	})
}

func TestFilterMatchesTheReference(t *testing.T) {
	eachLine(t, "filter.jsonl", func(n int, v map[string]interface{}) {
		f, err := NewFilter(strings(v["seed"]), v["threshold"].(float64))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		kept := v["kept"].([]interface{})
		maxes := floats(v["max_rougeL"])
		argmax := floats(v["argmax"])
		for k, c := range strings(v["candidates"]) {
			got, err := f.Offer(c)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kept != kept[k].(bool) || got.MaxRougeL != maxes[k] || got.Argmax != int(argmax[k]) {
				t.Errorf("filter.jsonl:%d candidate %d: got %+v", n, k, got)
			}
		}
	})
}

func TestRougeAndDifficulty(t *testing.T) {
	r, err := RougeL("the cat sat", "the cat")
	if err != nil || r.P != 1.0 || r.R != 2.0/3.0 {
		t.Fatalf("RougeL: %+v %v", r, err)
	}
	keep, err := DifficultyKeep(0.25, 0.2, 0.8)
	if err != nil || !keep {
		t.Fatalf("DifficultyKeep: %v %v", keep, err)
	}
}

func TestErrorsCarryStatusAndMessage(t *testing.T) {
	_, err := Vote(nil, ModeString)
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusInvalidArgument || e.Message != "responses is empty" {
		t.Fatalf("empty vote: %v", err)
	}
	_, err = Vote([]string{"a"}, Mode(9))
	if !errors.As(err, &e) || e.Status != StatusInvalidArgument {
		t.Fatalf("bad mode: %v", err)
	}
	_, err = DifficultyKeep(0.5, 0.9, 0.1)
	if !errors.As(err, &e) || e.Status != StatusInvalidArgument {
		t.Fatalf("bad bounds: %v", err)
	}
	_, err = NewFilter([]string{"a seed"}, 2)
	if err == nil {
		t.Fatal("threshold 2 accepted")
	}
	f, err := NewFilter([]string{"a seed question"}, 0.7)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	f.Close()
	if _, err := f.Offer("x"); err == nil {
		t.Fatal("offer on a closed filter succeeded")
	}
	if Version() == "" {
		t.Fatal("empty version")
	}
}
