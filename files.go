package sandbox

import (
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/kb-labs/sandbox/internal/spec"
)

// WorkspaceFile is a file written into a run's /workspace before its
// program starts (Handler.Files). The engine writes it inside the sandbox:
// it lands in the sandbox's own workspace tmpfs, never on the host's disk.
type WorkspaceFile struct {
	// Path is relative to /workspace: clean, slash-separated, without ".."
	// or "." components; missing parent directories are made (0755).
	Path string
	// Content is the file's bytes.
	Content []byte
	// Mode holds the permission bits (at most 0777; 0 means 0644).
	// Set-user-id, set-group-id and sticky bits are refused.
	Mode os.FileMode
}

// Bounds of Handler.Files. The total is also bounded by the workspace size
// (permissions.filesystem.workspaceSize).
const (
	MaxWorkspaceFiles     = spec.MaxFiles // 4096
	MaxWorkspaceFileBytes = 1 * GiB
	maxFilePath           = 1024
	maxFileDepth          = 64
	maxFilePaths          = 1 << 20 // bytes of all paths: they travel in one set-up message
)

// checkFiles validates h.Files: paths, modes, duplicates, a file that is
// also another's directory, and the bounds. Errors wrap ErrInvalidHandler
// and name the file by its index.
func checkFiles(files []WorkspaceFile) error {
	if len(files) > MaxWorkspaceFiles {
		return fmt.Errorf("%w: %d files; at most %d are accepted", ErrInvalidHandler, len(files), MaxWorkspaceFiles)
	}
	seen := make(map[string]bool, len(files))
	var total, paths int64
	for i, f := range files {
		if err := checkFilePath(f.Path); err != nil {
			return fmt.Errorf("%w: Files[%d] path %q: %v", ErrInvalidHandler, i, clipPath(f.Path), err)
		}
		if f.Mode&^os.ModePerm != 0 {
			return fmt.Errorf("%w: Files[%d] %s: mode %v: only permission bits (at most 0777) are accepted", ErrInvalidHandler, i, f.Path, f.Mode)
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: Files[%d] %s: given twice", ErrInvalidHandler, i, f.Path)
		}
		seen[f.Path] = true
		total += int64(len(f.Content))
		paths += int64(len(f.Path))
		if total > int64(MaxWorkspaceFileBytes) {
			return fmt.Errorf("%w: Files: more than %d bytes in all", ErrInvalidHandler, int64(MaxWorkspaceFileBytes))
		}
		if paths > maxFilePaths {
			return fmt.Errorf("%w: Files: more than %d bytes of paths in all", ErrInvalidHandler, maxFilePaths)
		}
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return fmt.Errorf("%w: Files: %s is a file and also the directory of %s", ErrInvalidHandler, dir, f.Path)
			}
		}
	}
	return nil
}

// checkFilePath accepts a clean relative path: no "..", "." or empty
// components, no NUL, bounded in length and depth.
func checkFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty")
	case len(p) > maxFilePath:
		return fmt.Errorf("longer than %d bytes", maxFilePath)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute; want a path relative to the workspace")
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("contains a NUL byte")
	}
	parts := strings.Split(p, "/")
	if len(parts) > maxFileDepth {
		return fmt.Errorf("more than %d components", maxFileDepth)
	}
	for _, c := range parts {
		switch {
		case c == "..":
			return fmt.Errorf(`".." is not accepted`)
		case c == "." || c == "":
			return fmt.Errorf(`want a clean path (no "." or empty components, no trailing slash)`)
		case len(c) > 255:
			return fmt.Errorf("a component is longer than 255 bytes")
		}
	}
	return nil
}

func clipPath(p string) string {
	if len(p) > 64 {
		return p[:64] + "..."
	}
	return p
}

// filesFit checks what Files need of the run: a workspace of the sandbox's
// own (never a host directory: the files would land on the host's disk)
// large enough to hold them.
func filesFit(cfg *Config, h Handler, ec ExecutionContext) error {
	if len(h.Files) == 0 {
		return nil
	}
	if cfg.Permissions.Filesystem.Workdir != "" || ec.Workdir != "" {
		return fmt.Errorf("%w: Files are written into the sandbox's own workspace; they cannot be combined with a host workdir (permissions.filesystem.workdir or the context's workdir)", ErrInvalidHandler)
	}
	var total int64
	for _, f := range h.Files {
		total += int64(len(f.Content))
	}
	if ws := int64(cfg.Permissions.Filesystem.WorkspaceSize); ws > 0 && total > ws {
		return fmt.Errorf("%w: Files hold %d bytes, more than the workspace (permissions.filesystem.workspaceSize %s)", ErrInvalidHandler, total, cfg.Permissions.Filesystem.WorkspaceSize)
	}
	return nil
}
