package auth

import (
	"encoding/json"
	"math"
	"time"
)

// Claims are the top-level fields of a userinfo, introspection or JWT
// payload, as decoded by encoding/json (numbers are float64, or json.Number
// when decoded with UseNumber).
type Claims map[string]any

// String returns the claim name if it is a JSON string.
func (c Claims) String(name string) (string, bool) {
	s, ok := c[name].(string)
	return s, ok
}

// Time returns a NumericDate claim ("exp", "nbf", "iat": seconds since the
// epoch, possibly fractional) as a time. Non-numbers, NaN, infinities and
// values outside ±1e11 seconds give false.
func (c Claims) Time(name string) (time.Time, bool) {
	var f float64
	switch v := c[name].(type) {
	case float64:
		f = v
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return time.Time{}, false
		}
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || math.Abs(f) > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// Strings returns a claim that is a string or an array of strings ("aud",
// "scp"). A string gives a one-element slice. An array holding anything but
// strings gives false.
func (c Claims) Strings(name string) ([]string, bool) {
	switch v := c[name].(type) {
	case string:
		return []string{v}, true
	case []string:
		return v, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	default:
		return nil, false
	}
}
