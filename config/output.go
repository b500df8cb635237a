package config

import (
	"bytes"
	"fmt"
	"net/url"
	"reflect"
	"slices"

	"go.yaml.in/yaml/v3"
)

const redacted = "REDACTED"

// Redacted returns a copy of c fit for printing: master.password,
// oauth2.client_secret and cluster.redis.password are "REDACTED" when set, and so is the password of a
// URL with credentials. Lists and maps are shared with c, not copied.
func (c Config) Redacted() Config {
	if c.Master.Password != "" {
		c.Master.Password = redacted
	}
	if c.OAuth2.ClientSecret != "" {
		c.OAuth2.ClientSecret = redacted
	}
	if c.Cluster.Redis.Password != "" {
		c.Cluster.Redis.Password = redacted
	}
	c.OAuth2.UserinfoURL = redactURL(c.OAuth2.UserinfoURL)
	c.OAuth2.IntrospectionURL = redactURL(c.OAuth2.IntrospectionURL)
	c.OAuth2.Issuer = redactURL(c.OAuth2.Issuer)
	return c
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	return u.String()
}

// YAML renders c in the file format of mailgate.example.yaml, every key
// included, durations as "5m0s". It does not redact: print c.Redacted().YAML().
func (c Config) YAML() ([]byte, error) {
	n, err := yamlNode(reflect.ValueOf(c), "")
	if err != nil {
		return nil, fmt.Errorf("config: yaml: %w", err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("config: yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// yamlNode builds the YAML of v (at dotted path key, "" for the root)
// following mapstructure tags, in field order; a field that is not offered
// as a key (notOffered) is left out unless set.
func yamlNode(v reflect.Value, key string) (*yaml.Node, error) {
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.Interface().(fmt.Stringer).String()}, nil
	case v.Kind() == reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			tag := f.Tag.Get("mapstructure")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			sub := tag
			if key != "" {
				sub = key + "." + tag
			}
			if notOffered[sub] && v.Field(i).IsZero() {
				continue
			}
			val, err := yamlNode(v.Field(i), sub)
			if err != nil {
				return nil, err
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: tag}, val)
		}
		return m, nil
	case v.Kind() == reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		for _, k := range keys {
			val, err := yamlNode(v.MapIndex(reflect.ValueOf(k)), key+"."+k)
			if err != nil {
				return nil, err
			}
			key := &yaml.Node{}
			if err := key.Encode(k); err != nil {
				return nil, err
			}
			m.Content = append(m.Content, key, val)
		}
		return m, nil
	case v.Kind() == reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			val, err := yamlNode(v.Index(i), key)
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, val)
		}
		return s, nil
	default:
		n := &yaml.Node{}
		if err := n.Encode(v.Interface()); err != nil {
			return nil, err
		}
		return n, nil
	}
}
