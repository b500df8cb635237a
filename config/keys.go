package config

import (
	"reflect"
	"strings"
	"sync"
)

// EnvPrefix starts the environment variable of every key:
// oauth2.userinfo_url is MAILGATE_OAUTH2_USERINFO_URL.
const EnvPrefix = "MAILGATE_"

// leaf is one configuration key that holds a value (not a section).
type leaf struct {
	key   string // dotted path of mapstructure tags, e.g. "imap.backend.address"
	index []int  // reflect field index path from Config
	typ   reflect.Type
}

func (l leaf) env() string { return envName(l.key) }

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

var leaves = sync.OnceValue(func() []leaf {
	return walk(reflect.TypeFor[Config](), "", nil)
})

// walk lists the leaves of struct type t in field order. Structs are
// sections, everything else (including slices of structs and maps) is a
// value.
func walk(t reflect.Type, prefix string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, walk(f.Type, key+".", idx)...)
			continue
		}
		out = append(out, leaf{key: key, index: idx, typ: f.Type})
	}
	return out
}

// Keys returns every configuration key in file order, dotted
// ("imap.backend.address"); its environment variable is
// MAILGATE_ + the key upper-cased with dots as underscores.
func Keys() []string {
	var out []string
	for _, l := range leaves() {
		if !notOffered[l.key] {
			out = append(out, l.key)
		}
	}
	return out
}

// notOffered are fields the shared Backend section has but only SMTP uses:
// they are not keys (not in Keys, the reference table, suggestions or
// check-config's output), and setting one is refused by Validate with "only
// used for SMTP: remove it".
var notOffered = map[string]bool{
	"imap.backend.login":  true,
	"pop3.backend.login":  true,
	"sieve.backend.login": true,
}

func leafByKey(key string) (leaf, bool) {
	for _, l := range leaves() {
		if l.key == key {
			return l, true
		}
	}
	return leaf{}, false
}

// field returns the addressable field of c that l names.
func (l leaf) field(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(l.index)
}
