package serl

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func trainerConfig(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	seeds := filepath.Join(dir, "seeds.jsonl")
	if err := os.WriteFile(seeds, []byte("{\"problem\": \"What is 1 plus 1?\", \"answer\": \"2\"}\n{\"problem\": \"What is 2 plus 3?\", \"answer\": \"5\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	model, err := filepath.Abs(fixtures + "tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	cfg := map[string]interface{}{
		"model": model, "seeds": seeds, "eval_data": seeds, "out": run, "steps": 3,
		"self_instruct": false, "rollout_batch_size": 2, "n_samples_per_prompt": 4, "generate_max_len": 6,
		"input_template": "{problem}", "reward_difficulty_bounds": []float64{0, 1},
		"train_batch_size": 8, "micro_train_batch_size": 4, "actor_learning_rate": 1e-3,
		"eval_k": 2, "eval_max_len": 4,
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(js), run
}

func TestTrainerRunsRealSteps(t *testing.T) {
	cfg, run := trainerConfig(t)
	tr, err := NewTrainer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var last Stats
	for i := 1; i <= 2; i++ {
		s, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		if s.Step != i || s.Kept != 2 {
			t.Fatalf("step %d: %+v", i, s)
		}
		last = s
	}
	dir, err := tr.Save()
	if err != nil || filepath.Base(dir) != "step-000002" {
		t.Fatalf("save: %q %v", dir, err)
	}
	r, err := tr.Evaluate()
	if err != nil || r.Questions != 2 || r.K != 2 || r.PassAt1 < 0 || r.PassAt1 > 1 {
		t.Fatalf("evaluate: %+v %v", r, err)
	}
	m, err := tr.MetricsJSON()
	if err != nil {
		t.Fatal(err)
	}
	var steps []map[string]interface{}
	if err := json.Unmarshal([]byte(m), &steps); err != nil || len(steps) != 2 {
		t.Fatalf("metrics: %v %s", err, m)
	}
	// The struct carries the record's update diagnostics and label accuracies
	// (NaN where the record has null).
	rec := steps[1]
	if rec["log_ratio_abs_mean"] != last.LogRatioAbsMean || rec["clip_fraction"] != last.ClipFraction {
		t.Fatalf("ratio fields: %+v vs %v", last, rec)
	}
	for name, v := range map[string]float64{"label_accuracy": last.LabelAccuracy, "kept_label_accuracy": last.KeptLabelAccuracy} {
		if f, ok := rec[name].(float64); (ok && f != v) || (!ok && (rec[name] != nil || !math.IsNaN(v))) {
			t.Fatalf("%s: %v vs %v", name, v, rec[name])
		}
	}
	tr.Close()
	if _, err := tr.Step(); err == nil {
		t.Fatal("step on a closed trainer succeeded")
	}
	res, err := ResumeTrainer(run)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	s, err := res.Step()
	if err != nil || s.Step != 3 {
		t.Fatalf("resumed step: %+v %v", s, err)
	}
}

func TestTrainerRejectsBadConfigs(t *testing.T) {
	_, err := NewTrainer("{not json")
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusBadData {
		t.Fatalf("bad JSON: %v", err)
	}
	_, err = NewTrainer(`{"model": "/nonexistent", "seeds": "x"}`)
	if !errors.As(err, &e) || e.Status != StatusBadData || !containsWord(e.Message, "model") {
		t.Fatalf("missing model: %v", err)
	}
}

func containsWord(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i:i+len(w)] == w {
			return true
		}
	}
	return false
}
