package sandbox

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadConfig reads a YAML or JSON config file (docs/cli.md, "Config file").
// Unknown keys and bad values are errors naming the key path and the accepted
// form.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			named := *ce
			named.File = path
			return Config{}, &named
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a YAML or JSON config document (JSON is read as YAML).
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return cfg, fmt.Errorf("not YAML or JSON: %v", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cfg, nil // empty document: all defaults
	}
	if err := decodeNode(doc.Content[0], reflect.ValueOf(&cfg).Elem(), ""); err != nil {
		return cfg, err
	}
	return cfg, nil
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// decodeNode walks the YAML tree against the Go type, so every error names
// its key path (execution.memory) and unknown keys are refused.
func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if v.Kind() != reflect.Pointer && v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			return &ConfigError{Field: path, Want: "want a single value"}
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			return &ConfigError{Field: path, Want: err.Error()}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		if err := decodeNode(n, nv.Elem(), path); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return &ConfigError{Field: orRoot(path), Want: "want a mapping of keys"}
		}
		fields := map[string]reflect.Value{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = v.Field(i)
		}
		if err := noDuplicates(n, path); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			f, ok := fields[key]
			if !ok {
				return &ConfigError{Field: join(path, key), Want: "unknown key; known keys: " + knownKeys(fields)}
			}
			if err := decodeNode(n.Content[i+1], f, join(path, key)); err != nil {
				return err
			}
			if t == executionType && noZero[key] && f.IsZero() {
				return &ConfigError{Field: join(path, key), Value: n.Content[i+1].Value, Want: "0 is not a limit; want a positive value, \"unlimited\", or no key for the default"}

			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return &ConfigError{Field: path, Want: "want a list"}
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := decodeNode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return &ConfigError{Field: path, Want: "want a mapping"}
		}
		if err := noDuplicates(n, path); err != nil {
			return err
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			val := reflect.New(v.Type().Elem()).Elem()
			key := n.Content[i].Value
			if err := decodeNode(n.Content[i+1], val, join(path, key)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), val)
		}
		v.Set(m)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return &ConfigError{Field: path, Want: "want a single value"}
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		want := "want a " + v.Kind().String()
		switch v.Kind() {
		case reflect.Bool:
			want = "want true or false"
		case reflect.Int, reflect.Int64:
			want = "want a whole number"
		case reflect.String:
			want = "want a string"
		}
		return &ConfigError{Field: path, Value: n.Value, Want: want}
	}
	return nil
}

// executionType and noZero: an explicit 0 for a limit whose default is a
// number (not unlimited) is refused rather than read as the default, which
// is what it silently meant before; cpuTime and cpus default to unlimited,
// so 0 keeps meaning that. The library's Config still reads a zero field as
// the default: Go has no "absent" for a struct field.
var (
	executionType = reflect.TypeFor[Execution]()
	noZero        = map[string]bool{"timeout": true, "grace": true, "memory": true, "pids": true,
		"maxOutput": true, "maxFileSize": true, "maxOpenFiles": true}
)

// noDuplicates refuses a mapping that names a key twice: YAML parsers keep
// the last one, so a typo'd override would silently replace a limit.
func noDuplicates(n *yaml.Node, path string) error {
	first := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if line, dup := first[k.Value]; dup {
			return &ConfigError{Field: join(path, k.Value),
				Want: fmt.Sprintf("duplicate key (line %d, first at line %d); give each key once", k.Line, line)}
		}
		first[k.Value] = k.Line
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(p string) string {
	if p == "" {
		return "(document)"
	}
	return p
}

func knownKeys(m map[string]reflect.Value) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}
