package discovery

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// A minimal XML property list writer (Apple's PropertyList-1.0 DTD) for the
// configuration profile: dictionaries keep their order, values are strings,
// integers, booleans, arrays and dictionaries. Text goes through
// encoding/xml, which escapes it.

// plistDict is an ordered dictionary.
type plistDict []plistEntry

type plistEntry struct {
	Key   string
	Value any // string, int, bool, plistDict or []plistDict
}

const plistDoctype = `DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd"`

// marshalPlist encodes d as the top-level dictionary of a plist document.
func marshalPlist(d plistDict) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header + "<!" + plistDoctype + ">\n")
	enc := xml.NewEncoder(&b)
	enc.Indent("", "\t")
	root := xml.StartElement{Name: xml.Name{Local: "plist"}, Attr: []xml.Attr{{Name: xml.Name{Local: "version"}, Value: "1.0"}}}
	err := enc.EncodeToken(root)
	if err == nil {
		err = encodePlistValue(enc, d)
	}
	if err == nil {
		err = enc.EncodeToken(root.End())
	}
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return shortBooleans(b.Bytes()), nil
}

// shortBooleans writes <true/> and <false/> as Apple's own tools do (the
// encoder can only write <true></true>). Text cannot collide: the encoder
// escapes a "<" in any string.
func shortBooleans(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("<true></true>"), []byte("<true/>"))
	return bytes.ReplaceAll(b, []byte("<false></false>"), []byte("<false/>"))
}

func encodePlistValue(enc *xml.Encoder, v any) error {
	switch v := v.(type) {
	case string:
		return enc.EncodeElement(v, plistElem("string"))
	case int:
		return enc.EncodeElement(v, plistElem("integer"))
	case bool:
		name := "false"
		if v {
			name = "true"
		}
		return encodeEmpty(enc, plistElem(name))
	case plistDict:
		return encodePlistDict(enc, v)
	case []plistDict:
		return encodeWrapped(enc, plistElem("array"), func() error {
			for _, d := range v {
				if err := encodePlistDict(enc, d); err != nil {
					return err
				}
			}
			return nil
		})
	default:
		return fmt.Errorf("discovery: plist value of type %T", v)
	}
}

func encodePlistDict(enc *xml.Encoder, d plistDict) error {
	return encodeWrapped(enc, plistElem("dict"), func() error {
		for _, e := range d {
			if err := enc.EncodeElement(e.Key, plistElem("key")); err != nil {
				return err
			}
			if err := encodePlistValue(enc, e.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// encodeWrapped writes start, what inner writes, and start's end.
func encodeWrapped(enc *xml.Encoder, start xml.StartElement, inner func() error) error {
	if err := enc.EncodeToken(start); err != nil {
		return err
	}
	if err := inner(); err != nil {
		return err
	}
	return enc.EncodeToken(start.End())
}

func encodeEmpty(enc *xml.Encoder, start xml.StartElement) error {
	return encodeWrapped(enc, start, func() error { return nil })
}

func plistElem(name string) xml.StartElement { return xml.StartElement{Name: xml.Name{Local: name}} }
