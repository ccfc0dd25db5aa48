package server

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// maxNesting bounds how deep a request body may nest: the walk below
// recurses once per level.
const maxNesting = 512

// refuser is implemented by request types that turn some keys away with a
// reason of their own instead of "unknown field" (RunContext: host paths).
type refuser interface {
	refuseKey(key string) (reason string, refused bool)
}

// decodeStrict decodes the one JSON value in data into v (a pointer) after
// checking every object key, at any depth, against the json names of the
// type it lands in, exactly. encoding/json alone matches names without
// regard to case (so "Outdir" fills a field tagged "outdir") and keeps the
// last of duplicate keys, where another parser would keep the first: a body
// that means different things to different readers is refused instead.
// Errors are *Error (400 naming the key) or the decoder's own syntax and
// type errors, which toAPIError maps. See RATIONALE.md, "Strict request
// decoding".
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{dec: dec}
	if err := w.value(reflect.TypeOf(v), "", 0); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("empty body; want a JSON object")
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return badRequest("the body ends in the middle of the JSON")
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body must hold exactly one JSON object")
	}
	// The keys are known good: the ordinary decode does the types.
	// DisallowUnknownFields stays as a second wall.
	full := json.NewDecoder(bytes.NewReader(data))
	full.DisallowUnknownFields()
	return full.Decode(v)
}

type walker struct {
	dec *json.Decoder
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
	refuserType     = reflect.TypeFor[refuser]()
)

// target returns the type a JSON value decodes into, pointers removed, or
// nil when any JSON is accepted there (interfaces, json.RawMessage, types
// with their own decoding): then only duplicates are checked.
func target(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t == rawMessageType || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textType) {
		return nil
	}
	return t
}

// value walks one JSON value that decodes into t.
func (w *walker) value(t reflect.Type, path string, depth int) error {
	if depth > maxNesting {
		return badRequest("%s: nested more than %d levels deep", where(path), maxNesting)
	}
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: the ordinary decode checks its type
	}
	t = target(t)
	switch d {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = fieldsOf(t)
		}
		seen := map[string]bool{}
		for w.dec.More() {
			kt, err := w.dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			kp := key
			if path != "" {
				kp = path + "." + key
			}
			if seen[key] {
				return badRequest("%q: the key is given twice", clip(kp))
			}
			seen[key] = true
			var vt reflect.Type
			switch {
			case fields != nil:
				ft, ok := fields[key]
				if !ok {
					return unknownKey(t, fields, kp, key)
				}
				vt = ft
			case t != nil && t.Kind() == reflect.Map:
				vt = t.Elem()
			}
			if err := w.value(vt, kp, depth+1); err != nil {
				return err
			}
		}
	}
	_, err = w.dec.Token() // the closing delimiter
	return err
}

func where(path string) string {
	if path == "" {
		return "the body"
	}
	return clip(path)
}

// unknownKey explains a key the type does not have: a reason of the type's
// own, a hint when only the case differs, or plain "unknown field".
func unknownKey(t reflect.Type, fields map[string]reflect.Type, path, key string) error {
	if reflect.PointerTo(t).Implements(refuserType) {
		if reason, refused := reflect.New(t).Interface().(refuser).refuseKey(key); refused {
			return badRequest("%s: %s", clip(path), reason)
		}
	}
	for name := range fields {
		if strings.EqualFold(name, key) {
			return badRequest("unknown field %q: field names are case-sensitive; did you mean %q?", clip(path), name)
		}
	}
	return badRequest("unknown field %q", clip(path))
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// fieldsOf maps the json names of struct t (as encoding/json names them:
// the tag's name, else the field's, embedded structs flattened) to their
// types.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addFields(t, m, 0)
	fieldCache.Store(t, m)
	return m
}

func addFields(t reflect.Type, m map[string]reflect.Type, depth int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && depth < 8 {
				addFields(ft, m, depth+1)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := m[name]; !dup {
			m[name] = f.Type
		}
	}
}
