// Command serl-vote reads JSONL {"responses": [...]} on stdin and writes
// {"rewards", "majority", "agreement"} per line, like `serl vote`.
//
//	serl-vote [-mode string|equiv] < groups.jsonl
//
// Exit codes: 0 success, 1 bad input (the message names the line), 2 bad usage.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"libserl/serl"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("serl-vote", flag.ContinueOnError)
	flags.SetOutput(stderr)
	modeName := flags.String("mode", "string", "string or equiv")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	mode := serl.ModeString
	switch *modeName {
	case "string":
	case "equiv":
		mode = serl.ModeEquiv
	default:
		fmt.Fprintf(stderr, "serl-vote: unknown mode %q (expected string or equiv)\n", *modeName)
		return 2
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	line := 0
	for in.Scan() {
		line++
		if len(in.Bytes()) == 0 {
			continue
		}
		var rec struct {
			Responses []string `json:"responses"`
		}
		if err := json.Unmarshal(in.Bytes(), &rec); err != nil {
			out.Flush()
			fmt.Fprintf(stderr, "serl-vote: stdin line %d: %v\n", line, err)
			return 1
		}
		r, err := serl.Vote(rec.Responses, mode)
		if err != nil {
			out.Flush()
			fmt.Fprintf(stderr, "serl-vote: stdin line %d: field \"responses\": %v\n", line, err)
			return 1
		}
		b, err := json.Marshal(map[string]interface{}{"rewards": r.Rewards, "majority": r.Majority, "agreement": r.Agreement})
		if err != nil {
			fmt.Fprintf(stderr, "serl-vote: stdin line %d: %v\n", line, err)
			return 1
		}
		out.Write(append(b, '\n'))
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(stderr, "serl-vote: reading stdin: %v\n", err)
		return 1
	}
	return 0
}
