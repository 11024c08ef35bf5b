package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestVotesTheExampleFile(t *testing.T) {
	in, err := os.ReadFile("../../../../examples/votes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-mode", "equiv"}, bytes.NewReader(in), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d output lines, want 3", len(lines))
	}
	var first struct {
		Rewards   []float64 `json:"rewards"`
		Majority  string    `json:"majority"`
		Agreement float64   `json:"agreement"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	// 6 answers of 50√10 and 2 of 158.113883, which math_verify 0.8.0 counts
	// as the same value (rounded to 6 decimals).
	if first.Majority != `50\sqrt{10}` || first.Agreement != 0.5 || len(first.Rewards) != 16 {
		t.Fatalf("first group: %+v", first)
	}
}

func TestBadInputAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(nil, strings.NewReader("{\"responses\": [\"1\"]}\n{\"responses\": []}\n"), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "line 2") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut.String(), out.String())
	}
	if code := run([]string{"-mode", "plurality"}, strings.NewReader(""), &out, &errOut); code != 2 {
		t.Fatalf("bad mode exit %d", code)
	}
}
