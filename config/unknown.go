package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unknownKeys walks the YAML document data against the Config type and
// returns a problem for every key that is not a configuration key, with its
// line and a suggestion. where names the file ("" = none).
func unknownKeys(data []byte, where string) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil // the decoder reports syntax errors
	}
	var out []error
	walkUnknown(doc.Content[0], reflect.TypeFor[Config](), "", where, &out)
	return out
}

func walkUnknown(n *yaml.Node, t reflect.Type, prefix, where string, out *[]error) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			continue
		}
		name := strings.ToLower(k.Value)
		f, ok := fieldByTag(t, name)
		if !ok {
			fe := &FieldError{Key: prefix + k.Value, Problem: "unknown key"}
			if s := suggestKey(t, prefix, name); s != "" {
				fe.Problem += " (did you mean " + s + "?)"
			}
			if where != "" {
				fe.Where = fmt.Sprintf("%s:%d", where, k.Line)
			} else {
				fe.Where = fmt.Sprintf("line %d", k.Line)
			}
			*out = append(*out, fe)
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Struct:
			walkUnknown(v, f.Type, prefix+name+".", where, out)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct && v.Kind == yaml.SequenceNode:
			for j, item := range v.Content {
				walkUnknown(item, f.Type.Elem(), fmt.Sprintf("%s%s[%d].", prefix, name, j), where, out)
			}
		}
	}
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("mapstructure"); f.IsExported() && tag != "" && tag != "-" && tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggestKey proposes a key for the unknown name under section type t
// (prefix is the section's dotted path): the closest key of the section, or
// else a key of that name elsewhere (written in full).
func suggestKey(t reflect.Type, prefix, name string) string {
	var siblings []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" && t.Field(i).IsExported() {
			siblings = append(siblings, tag)
		}
	}
	if s := closest(name, siblings); s != "" {
		return s
	}
	// Not in this section: the same name in another one (e.g. a key
	// written at the top level instead of under its section).
	var elsewhere []string
	for _, k := range Keys() {
		last := k[strings.LastIndex(k, ".")+1:]
		if sec := strings.TrimSuffix(k, last); sec != prefix && last == name {
			elsewhere = append(elsewhere, k)
		}
	}
	if len(elsewhere) == 1 {
		return elsewhere[0]
	}
	return ""
}

// closest returns the candidate nearest to s if it is near enough to be a
// likely misspelling: at most 2 edits (1 for short names), or s a prefix of
// it or it of s ("cert" for "cert_file").
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(s, c)
		limit := 2
		if len(s) <= 4 {
			limit = 1
		}
		prefix := len(s) >= 3 && len(c) >= 3 && (strings.HasPrefix(c, s) || strings.HasPrefix(s, c))
		if d > limit && !prefix {
			continue
		}
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (adjacent swaps count
// as one edit) between a and b.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// suggestEnv proposes the MAILGATE_* variable nearest to the unknown name.
func suggestEnv(name string) string {
	rest := strings.TrimPrefix(name, EnvPrefix)
	var cands []string
	for _, l := range leaves() {
		if !notOffered[l.key] {
			cands = append(cands, strings.TrimPrefix(l.env(), EnvPrefix))
		}
	}
	if s := closest(rest, cands); s != "" {
		return EnvPrefix + s
	}
	return ""
}
