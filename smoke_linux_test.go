package sandbox_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/kb-labs/sandbox"
)

func TestSmoke(t *testing.T) {
	r, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Run(context.Background(), sandbox.Command("sh", "-c", "echo $$; id; hostname; ls /proc; cat /proc/self/status | grep -E 'Cap|NoNew|Seccomp'"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", " ")
	t.Logf("%s", b)
}
