package tbaddon

// A validator for the part of Mozilla's WebExtension schema format
// (toolkit/components/extensions/Schemas.sys.mjs) that oauth_provider.json
// uses. A keyword it does not know fails the test, so a schema that starts
// using one is noticed rather than skipped.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type schemaNode = map[string]any

var schemaKeywords = []string{
	"additionalProperties", "description", "enum", "format", "items", "maxItems",
	"maxLength", "minItems", "minLength", "optional", "properties", "type",
}

// loadProviderSchema returns the oauth_provider property that the schema
// file adds to the manifest namespace's WebExtensionManifest.
func loadProviderSchema(t *testing.T, name string) schemaNode {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var namespaces []struct {
		Namespace string       `json:"namespace"`
		Types     []schemaNode `json:"types"`
	}
	if err := json.Unmarshal(stripComments(b), &namespaces); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, ns := range namespaces {
		for _, ty := range ns.Types {
			props, _ := ty["properties"].(schemaNode)
			p, ok := props["oauth_provider"].(schemaNode)
			if ns.Namespace == "manifest" && ty["$extend"] == "WebExtensionManifest" && ok {
				if probs := checkKeywords(p, "oauth_provider"); len(probs) > 0 {
					t.Fatalf("%s: %v", name, probs)
				}
				return p
			}
		}
	}
	t.Fatalf("%s: no oauth_provider in manifest.WebExtensionManifest", name)
	return nil
}

// stripComments drops the leading "//" lines (Mozilla's license header).
func stripComments(b []byte) []byte {
	for {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		t := bytes.TrimSpace(line)
		if len(b) == 0 || (len(t) > 0 && !bytes.HasPrefix(t, []byte("//"))) {
			return b
		}
		b = rest
	}
}

// checkKeywords walks the whole schema, optional parts included.
func checkKeywords(s schemaNode, path string) []string {
	var probs []string
	for _, k := range sortedKeys(s) {
		if !slices.Contains(schemaKeywords, k) {
			probs = append(probs, fmt.Sprintf("%s: keyword %q unsupported by the test validator", path, k))
		}
	}
	props, _ := s["properties"].(schemaNode)
	for _, k := range sortedKeys(props) {
		probs = append(probs, checkKeywords(props[k].(schemaNode), path+"."+k)...)
	}
	for _, k := range []string{"items", "additionalProperties"} {
		if sub, ok := s[k].(schemaNode); ok {
			probs = append(probs, checkKeywords(sub, path+"."+k)...)
		}
	}
	return probs
}

// validate returns what is wrong with v (decoded JSON) under schema s.
func validate(s schemaNode, v any, path string) []string {
	switch s["type"] {
	case "object":
		return validateObject(s, v, path)
	case "array":
		return validateArray(s, v, path)
	case "string":
		return validateString(s, v, path)
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: %#v is not a boolean", path, v)}
		}
		return nil
	case "any":
		return nil
	}
	return []string{fmt.Sprintf("%s: type %v unsupported by the test validator", path, s["type"])}
}

func validateObject(s schemaNode, v any, path string) []string {
	obj, ok := v.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: %#v is not an object", path, v)}
	}
	props, _ := s["properties"].(schemaNode)
	var probs []string
	for _, k := range sortedKeys(props) {
		ps := props[k].(schemaNode)
		if val, ok := obj[k]; ok {
			probs = append(probs, validate(ps, val, path+"."+k)...)
		} else if !isOptional(ps) {
			probs = append(probs, fmt.Sprintf("%s.%s: missing", path, k))
		}
	}
	for _, k := range sortedKeys(obj) {
		if _, known := props[k]; known {
			continue
		}
		extra, ok := s["additionalProperties"].(schemaNode)
		if !ok {
			probs = append(probs, fmt.Sprintf("%s.%s: unexpected property", path, k))
			continue
		}
		probs = append(probs, validate(extra, obj[k], path+"."+k)...)
	}
	return probs
}

func validateArray(s schemaNode, v any, path string) []string {
	arr, ok := v.([]any)
	if !ok {
		return []string{fmt.Sprintf("%s: %#v is not an array", path, v)}
	}
	var probs []string
	if n, ok := s["minItems"].(float64); ok && float64(len(arr)) < n {
		probs = append(probs, fmt.Sprintf("%s: %d items, want at least %v", path, len(arr), n))
	}
	if n, ok := s["maxItems"].(float64); ok && float64(len(arr)) > n {
		probs = append(probs, fmt.Sprintf("%s: %d items, want at most %v", path, len(arr), n))
	}
	if items, ok := s["items"].(schemaNode); ok {
		for i, e := range arr {
			probs = append(probs, validate(items, e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return probs
}

func validateString(s schemaNode, v any, path string) []string {
	str, ok := v.(string)
	if !ok {
		return []string{fmt.Sprintf("%s: %#v is not a string", path, v)}
	}
	var probs []string
	if n, ok := s["minLength"].(float64); ok && float64(len(str)) < n {
		probs = append(probs, fmt.Sprintf("%s: shorter than %v", path, n))
	}
	if n, ok := s["maxLength"].(float64); ok && float64(len(str)) > n {
		probs = append(probs, fmt.Sprintf("%s: longer than %v", path, n))
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, any(str)) {
		probs = append(probs, fmt.Sprintf("%s: %q not in %v", path, str, enum))
	}
	if f, ok := s["format"].(string); ok {
		if err := checkFormat(f, str); err != nil {
			probs = append(probs, fmt.Sprintf("%s: %v", path, err))
		}
	}
	return probs
}

// checkFormat follows Schemas.sys.mjs: "url" must parse as an absolute URL,
// "strictRelativeUrl" must not.
func checkFormat(format, s string) error {
	u, err := url.Parse(s)
	switch format {
	case "url":
		if err != nil || u.Scheme == "" || (strings.HasPrefix(u.Scheme, "http") && u.Host == "") {
			return fmt.Errorf("%q is not an absolute URL", s)
		}
	case "strictRelativeUrl":
		if err != nil || u.Scheme != "" {
			return fmt.Errorf("%q is not a relative URL", s)
		}
	default:
		return fmt.Errorf("format %q unsupported by the test validator", format)
	}
	return nil
}

// isOptional: Mozilla writes true, or a string such as "omit-key-if-missing".
func isOptional(s schemaNode) bool {
	switch o := s["optional"].(type) {
	case bool:
		return o
	case string:
		return o != "" && o != "false"
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
