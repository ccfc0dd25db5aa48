package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/kb-labs/sandbox"
)

func TestRLDebug(t *testing.T) {
	if os.Getenv("SBX_RL_DEBUG") == "" {
		t.Skip()
	}
	for _, c := range []struct{ sc, ll bool }{{false, false}, {true, false}, {false, true}} {
		r, err := sandbox.New(sandbox.Config{BestEffort: true, Security: sandbox.Security{Seccomp: sandbox.Bool(c.sc), Landlock: sandbox.Bool(c.ll)}})
		if err != nil {
			fmt.Println(err)
			continue
		}
		res, err := r.Run(context.Background(), sandbox.Command("sh", "-c", "id; grep -E '^(Cap|NoNew|Secc)' /proc/self/status"), nil, nil)
		fmt.Printf("sc=%v ll=%v err=%v status=%s %+v out=%s %s\n", c.sc, c.ll, err, res.Status, res.Error, res.Stdout, res.Stderr)
		r.Close()
	}
}
