package discovery

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"testing"
)

// decodePlist is a test-side reader of XML property lists: dict becomes
// map[string]any, array []any, integer int, true/false bool, string string.
func decodePlist(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("plist: no <plist>: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "plist" {
			v, err := plistValue(dec)
			if err != nil {
				t.Fatalf("plist: %v\n%s", err, b)
			}
			d, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("plist root is %T", v)
			}
			return d
		}
	}
}

// plistValue reads the next value element and everything inside it.
func plistValue(dec *xml.Decoder) (any, error) {
	se, err := nextStart(dec)
	if err != nil {
		return nil, err
	}
	switch se.Name.Local {
	case "dict":
		return plistDictValue(dec)
	case "array":
		var out []any
		for {
			v, err := plistValue(dec)
			if errors.Is(err, errEndElement) {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	case "true", "false":
		return se.Name.Local == "true", dec.Skip()
	case "string", "integer":
		var s string
		if err := dec.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		if se.Name.Local == "integer" {
			return strconv.Atoi(s)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unexpected <%s>", se.Name.Local)
}

func plistDictValue(dec *xml.Decoder) (map[string]any, error) {
	out := map[string]any{}
	for {
		se, err := nextStart(dec)
		if errors.Is(err, errEndElement) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var key string
		if se.Name.Local != "key" {
			return nil, fmt.Errorf("<%s> where a <key> belongs", se.Name.Local)
		}
		if err := dec.DecodeElement(&key, &se); err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("key %q twice", key)
		}
		if out[key], err = plistValue(dec); err != nil {
			return nil, err
		}
	}
}

var errEndElement = errors.New("end element")

// nextStart skips white space to the next start element; errEndElement at
// the end of the enclosing one.
func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return xml.StartElement{}, io.ErrUnexpectedEOF
		}
		if err != nil {
			return xml.StartElement{}, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return tok, nil
		case xml.EndElement:
			return xml.StartElement{}, errEndElement
		case xml.CharData:
			if len(bytes.TrimSpace(tok)) > 0 {
				return xml.StartElement{}, fmt.Errorf("text %q outside a value", tok)
			}
		}
	}
}

var uuidV5 = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

func TestMobileconfigDocument(t *testing.T) {
	fred := address{Local: "fred", Domain: "example.org"}
	b := must(mobileconfigDocument(passwordSite(), fred))
	top := decodePlist(t, b)
	want := map[string]any{
		"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadRemovalDisallowed": false,
		"PayloadOrganization": "example.com", "PayloadDisplayName": "example.com mail",
	}
	checkPlist(t, "profile", top, want)
	content, ok := top["PayloadContent"].([]any)
	if !ok || len(content) != 1 {
		t.Fatalf("PayloadContent = %#v", top["PayloadContent"])
	}
	mail, _ := content[0].(map[string]any)
	checkPlist(t, "mail", mail, map[string]any{
		"PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
		"EmailAccountType": "EmailTypeIMAP", "EmailAddress": "fred@example.org",
		"EmailAccountDescription":                "example.com",
		"IncomingMailServerHostName":             "mail.example.com",
		"IncomingMailServerPortNumber":           993,
		"IncomingMailServerUseSSL":               true,
		"IncomingMailServerAuthentication":       "EmailAuthPassword",
		"IncomingMailServerUsername":             "fred@example.org",
		"OutgoingMailServerHostName":             "smtp.example.com",
		"OutgoingMailServerPortNumber":           465,
		"OutgoingMailServerUseSSL":               true,
		"OutgoingMailServerAuthentication":       "EmailAuthPassword",
		"OutgoingMailServerUsername":             "fred@example.org",
		"OutgoingPasswordSameAsIncomingPassword": true,
	})
	for _, k := range []string{"IncomingPassword", "OutgoingPassword"} {
		if _, ok := mail[k]; ok {
			t.Errorf("profile carries %s", k)
		}
	}
	pu, mu := top["PayloadUUID"].(string), mail["PayloadUUID"].(string)
	if !uuidV5.MatchString(pu) || !uuidV5.MatchString(mu) || pu == mu {
		t.Errorf("PayloadUUIDs = %q, %q; want two distinct version 5 UUIDs", pu, mu)
	}
	if id := top["PayloadIdentifier"]; id != "org.example.mailgate."+pu || mail["PayloadIdentifier"] != id.(string)+".mail" {
		t.Errorf("PayloadIdentifiers = %q, %q", id, mail["PayloadIdentifier"])
	}
}

// TestMobileconfigDeterministic: the same account gets the same bytes (so a
// new download replaces the profile); another account other identifiers.
func TestMobileconfigDeterministic(t *testing.T) {
	site := passwordSite()
	a := must(mobileconfigDocument(site, address{"fred", "example.org"}))
	if b := must(mobileconfigDocument(site, address{"fred", "example.org"})); !bytes.Equal(a, b) {
		t.Error("two downloads differ")
	}
	ua := decodePlist(t, a)["PayloadUUID"]
	for _, other := range []address{{"anna", "example.org"}, {"fred", "example.com"}} {
		if uo := decodePlist(t, must(mobileconfigDocument(site, other)))["PayloadUUID"]; uo == ua {
			t.Errorf("%s has fred@example.org's PayloadUUID", other)
		}
	}
	if uc := decodePlist(t, must(mobileconfigDocument(site, address{"FRED", "example.org"})))["PayloadUUID"]; uc != ua {
		t.Error("the UUID depends on the address's case")
	}
}

func TestMobileconfigNeedsPasswords(t *testing.T) {
	fred := address{Local: "fred", Domain: "example.com"}
	if _, err := mobileconfigDocument(oauthSite(), fred); !errors.Is(err, errNoPasswordAccount) {
		t.Errorf("SMTP without passwords: err = %v", err)
	}
	site := passwordSite()
	site.Servers = site.Servers[2:] // POP3 and SMTP left
	top := decodePlist(t, must(mobileconfigDocument(site, fred)))
	mail := top["PayloadContent"].([]any)[0].(map[string]any)
	if mail["EmailAccountType"] != "EmailTypePOP" || mail["IncomingMailServerPortNumber"] != 995 {
		t.Errorf("POP3 account: %v %v", mail["EmailAccountType"], mail["IncomingMailServerPortNumber"])
	}
}

// TestMobileconfigEscapes: text from the site cannot break the plist.
func TestMobileconfigEscapes(t *testing.T) {
	site := passwordSite()
	site.DisplayName = `</string><true/> & "x"`
	top := decodePlist(t, must(mobileconfigDocument(site, address{"fred", "example.com"})))
	if top["PayloadOrganization"] != site.DisplayName {
		t.Errorf("PayloadOrganization = %q", top["PayloadOrganization"])
	}
}

func TestUUID5(t *testing.T) {
	// RFC 9562 appendix A.4: "www.example.com" in the DNS namespace.
	u := uuid5([16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}, "www.example.com")
	if got := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:]); got != "2ed6657d-e927-568b-95e1-2665a8aea6a2" {
		t.Errorf("uuid5 = %s", got)
	}
}

func checkPlist(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s %s = %#v, want %#v", what, k, got[k], w)
		}
	}
}
