package server

import (
	"encoding/base64"
	"errors"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/kb-labs/sandbox"
)

// File is one inline file of a run request.
type File struct {
	Path     string `json:"path"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"` // utf8 (default) or base64
	Mode     string `json:"mode,omitempty"`     // octal permission bits, default 0644
}

// fileLimits caps what one request may upload.
type fileLimits struct {
	count int   // files per request
	total int64 // decoded bytes of all files
	depth int   // path components
}

// checkFiles validates paths, encodings and modes, and decodes the
// contents for the engine (sandbox.Handler.Files, which checks them again).
func checkFiles(files []File, lim fileLimits) ([]sandbox.WorkspaceFile, error) {
	if len(files) > lim.count {
		return nil, badRequest("files: %d files; at most %d are accepted", len(files), lim.count)
	}
	out := make([]sandbox.WorkspaceFile, 0, len(files))
	seen := map[string]bool{}
	var total int64
	for i, f := range files {
		name := "files[" + strconv.Itoa(i) + "]"
		rel, err := checkPath(f.Path, lim.depth)
		if err != nil {
			return nil, badRequest("%s.path %q: %s", name, clip(f.Path), err.Error())
		}
		if seen[rel] {
			return nil, badRequest("%s.path %q: given twice", name, rel)
		}
		seen[rel] = true
		var data []byte
		switch f.Encoding {
		case "", "utf8":
			data = []byte(f.Content)
		case "base64":
			data, err = base64.StdEncoding.DecodeString(f.Content)
			if err != nil {
				return nil, badRequest("%s.content: not valid standard base64", name)
			}
		default:
			return nil, badRequest("%s.encoding %q: want \"utf8\" or \"base64\"", name, clip(f.Encoding))
		}
		mode := os.FileMode(0o644)
		if f.Mode != "" {
			m, err := strconv.ParseUint(strings.TrimPrefix(f.Mode, "0o"), 8, 32)
			if err != nil || m > 0o777 {
				return nil, badRequest("%s.mode %q: want octal permission bits such as \"0644\" or \"0755\" (no setuid, setgid or sticky)", name, clip(f.Mode))
			}
			mode = os.FileMode(m)
		}
		total += int64(len(data))
		if total > lim.total {
			return nil, badRequest("files: more than %d bytes in all", lim.total)
		}
		out = append(out, sandbox.WorkspaceFile{Path: rel, Content: data, Mode: mode})
	}
	// A file cannot also be a directory of another file.
	for _, f := range out {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return nil, badRequest("files: %q is a file and also the directory of %q", dir, f.Path)
			}
		}
	}
	return out, nil
}

// checkPath accepts a clean relative path of at most depth components,
// without "..", "." or empty components.
func checkPath(p string, depth int) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty path")
	case len(p) > 1024:
		return "", errors.New("longer than 1024 bytes")
	case strings.HasPrefix(p, "/"):
		return "", errors.New("absolute paths are not accepted; want a path relative to the workspace")
	case strings.ContainsRune(p, 0):
		return "", errors.New("contains a NUL byte")
	}
	parts := strings.Split(p, "/")
	if len(parts) > depth {
		return "", errors.New("more than " + strconv.Itoa(depth) + " components")
	}
	for _, c := range parts {
		switch c {
		case "..":
			return "", errors.New(`".." is not accepted`)
		case ".", "":
			return "", errors.New("want a clean path (no \".\" or empty components, no trailing slash)")
		}
		if len(c) > 255 {
			return "", errors.New("a component is longer than 255 bytes")
		}
	}
	return p, nil
}

// clip shortens client strings quoted back in messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
