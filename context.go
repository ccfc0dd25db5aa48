package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// ExecutionContext describes who runs what, for the handler and the result
// (docs/result.md, "Execution context"). Host paths (Workdir, Outdir,
// PluginRoot) are honoured from the library and the CLI only; the HTTP
// service refuses them.
type ExecutionContext struct {
	RequestID     string         `json:"requestId,omitempty"`
	Workdir       string         `json:"workdir,omitempty"`
	Outdir        string         `json:"outdir,omitempty"`
	PluginRoot    string         `json:"pluginRoot,omitempty"`
	PluginID      string         `json:"pluginId,omitempty"`
	PluginVersion string         `json:"pluginVersion,omitempty"`
	ConfigSection string         `json:"configSection,omitempty"`
	User          *User          `json:"user,omitempty"`
	Debug         bool           `json:"debug,omitempty"`
	TraceID       string         `json:"traceId,omitempty"`
	SpanID        string         `json:"spanId,omitempty"`
	ParentSpanID  string         `json:"parentSpanId,omitempty"`
	Adapter       map[string]any `json:"adapterContext,omitempty"`
	AdapterMeta   *AdapterMeta   `json:"adapterMeta,omitempty"`
	DryRun        bool           `json:"dryRun,omitempty"`
	Version       string         `json:"version,omitempty"`
}

// User identifies the user on whose behalf a run happens.
type User struct {
	ID string `json:"id"`
}

// AdapterMeta describes the adapter that called the handler.
type AdapterMeta struct {
	Type      string `json:"type,omitempty"`
	Signature string `json:"signature,omitempty"`
	Version   string `json:"version,omitempty"`
}

// validate checks the context's own rules: a version's major must be 1, and
// the adapter type must be one of cli, rest, job.
func (c *ExecutionContext) validate() error {
	if c.Version != "" {
		major, _, _ := strings.Cut(strings.TrimPrefix(c.Version, "v"), ".")
		if major != "1" {
			return fmt.Errorf("%w: context version %q: want a semver string with major 1 (1.x.y)", ErrInvalidHandler, c.Version)
		}
	}
	if c.Adapter != nil {
		switch c.Adapter["type"] {
		case "cli", "rest", "job":
		default:
			return fmt.Errorf("%w: context adapterContext.type %v: want \"cli\", \"rest\" or \"job\"", ErrInvalidHandler, c.Adapter["type"])
		}
	}
	if len(c.RequestID) > 128 {
		return fmt.Errorf("%w: context requestId longer than 128 characters", ErrInvalidHandler)
	}
	return nil
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
