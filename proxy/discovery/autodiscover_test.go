package discovery

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
)

// xmlDecl is what Outlook puts first.
const xmlDecl = `<?xml version="1.0" encoding="utf-8"?>`

// adRequestBody is an Outlook request for addr asking for schema.
func adRequestBody(addr, schema string) string {
	return xmlDecl +
		`<Autodiscover xmlns="` + nsRequest + `"><Request>` +
		`<EMailAddress>` + addr + `</EMailAddress>` +
		`<AcceptableResponseSchema>` + schema + `</AcceptableResponseSchema>` +
		`</Request></Autodiscover>`
}

func TestParseAutodiscoverRequest(t *testing.T) {
	mobile := `<Autodiscover xmlns="` + nsMobileRequest + `"><Request><EMailAddress>a@example.com</EMailAddress>` +
		`<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</AcceptableResponseSchema></Request></Autodiscover>`
	for _, tt := range []struct {
		name, body, want string
		err              error
	}{
		{"outlook", adRequestBody("fred@example.com", nsOutlookSchema), "fred@example.com", nil},
		{"spaces", adRequestBody("\n  fred@example.com \n", " "+nsOutlookSchema+"\n"), "fred@example.com", nil},
		{"entity", adRequestBody("fred&#64;example.com", nsOutlookSchema), "fred@example.com", nil},
		{"mobilesync", mobile, "", errUnsupportedSchema},
		{"other schema", adRequestBody("fred@example.com", "urn:x"), "", errUnsupportedSchema},
		{"no address", adRequestBody("", nsOutlookSchema), "", errMalformedRequest},
		{"no namespace", `<Autodiscover><Request><EMailAddress>a@example.com</EMailAddress><AcceptableResponseSchema>` +
			nsOutlookSchema + `</AcceptableResponseSchema></Request></Autodiscover>`, "", errMalformedRequest},
		{"wrong root", `<Other xmlns="` + nsRequest + `"/>`, "", errMalformedRequest},
		{"not xml", "EMailAddress=fred@example.com", "", errMalformedRequest},
		{"empty", "", "", errMalformedRequest},
		{"unclosed", `<Autodiscover xmlns="` + nsRequest + `"><Request>`, "", errMalformedRequest},
		{"custom entity", `<!DOCTYPE a [<!ENTITY e "x">]>` + adRequestBody("&e;@example.com", nsOutlookSchema), "", errMalformedRequest},
		{"utf-16", strings.Replace(adRequestBody("a@example.com", nsOutlookSchema), "utf-8", "utf-16", 1), "", errMalformedRequest},
		{"too large", adRequestBody("a@example.com", nsOutlookSchema) + strings.Repeat(" ", maxAutodiscoverB), "", errRequestTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAutodiscoverRequest(strings.NewReader(tt.body))
			if got != tt.want || (tt.err == nil) != (err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Errorf("parseAutodiscoverRequest = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// Test-side view of the response.
type olResponse struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"Response"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocols   []olProtocol `xml:"Protocol"`
		} `xml:"Account"`
		Error *struct {
			Code    int    `xml:"ErrorCode"`
			Message string `xml:"Message"`
		} `xml:"Error"`
	} `xml:"Response"`
}

type olProtocol struct {
	Type, Server                   string
	Port                           int
	DomainRequired, LoginName, SPA string
	SSL, Encryption, AuthRequired  string
}

func decodeAutodiscover(t *testing.T, b []byte) olResponse {
	t.Helper()
	var r olResponse
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("xml.Unmarshal(autodiscover) = %v\n%s", err, b)
	}
	if r.XMLName.Space != nsResponse || r.Response.XMLName.Space != nsOutlookSchema {
		t.Errorf("namespaces = %q, %q", r.XMLName.Space, r.Response.XMLName.Space)
	}
	return r
}

func TestAutodiscoverDocument(t *testing.T) {
	fred := address{Local: "fred", Domain: "example.org"}
	p := func(typ, host string, port int, ssl, enc string) olProtocol {
		return olProtocol{typ, host, port, "off", "fred@example.org", "off", ssl, enc, "on"}
	}
	for _, tt := range []struct {
		name string
		site Site
		want []olProtocol
	}{
		{"oauth site: password servers only", oauthSite(), []olProtocol{
			p("IMAP", "mail.example.com", 993, "on", "SSL"),
			p("IMAP", "mail.example.com", 143, "off", "TLS"),
		}},
		{"password site", passwordSite(), []olProtocol{
			p("IMAP", "mail.example.com", 993, "on", "SSL"),
			p("IMAP", "mail.example.com", 143, "off", "TLS"),
			p("POP3", "mail.example.com", 995, "on", "SSL"),
			p("SMTP", "smtp.example.com", 465, "on", "SSL"),
			p("SMTP", "smtp.example.com", 587, "off", "TLS"),
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := decodeAutodiscover(t, must(autodiscoverDocument(tt.site, fred)))
			a := r.Response.Account
			if a.AccountType != "email" || a.Action != "settings" || r.Response.Error != nil {
				t.Errorf("account = %q %q, error %v", a.AccountType, a.Action, r.Response.Error)
			}
			if len(a.Protocols) != len(tt.want) {
				t.Fatalf("protocols = %+v\nwant %+v", a.Protocols, tt.want)
			}
			for i, w := range tt.want {
				if a.Protocols[i] != w {
					t.Errorf("protocol %d = %+v, want %+v", i, a.Protocols[i], w)
				}
			}
		})
	}
	site := oauthSite()
	site.Servers = site.Servers[2:] // no password anywhere
	if _, err := autodiscoverDocument(site, fred); !errors.Is(err, errNoPasswordServer) {
		t.Errorf("no password server: err = %v", err)
	}
}

func TestAutodiscoverErrorDocs(t *testing.T) {
	for doc, code := range map[*[]byte]int{&adInvalidRequestDoc: 600, &adProviderUnavailableDoc: 601} {
		r := decodeAutodiscover(t, *doc)
		if r.Response.Error == nil || r.Response.Error.Code != code || r.Response.Error.Message == "" {
			t.Errorf("error document %d = %s", code, *doc)
		}
	}
}

// FuzzAutodiscoverRequest: any body parses to a trimmed, non-empty address
// or to one of the three refusals, without panicking.
func FuzzAutodiscoverRequest(f *testing.F) {
	f.Add([]byte(adRequestBody("fred@example.com", nsOutlookSchema)))
	f.Fuzz(func(t *testing.T, body []byte) {
		addr, err := parseAutodiscoverRequest(bytes.NewReader(body))
		if err != nil {
			if !errors.Is(err, errMalformedRequest) && !errors.Is(err, errUnsupportedSchema) && !errors.Is(err, errRequestTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			if addr != "" {
				t.Fatalf("address %q with error %v", addr, err)
			}
			return
		}
		if len(body) > maxAutodiscoverB {
			t.Fatalf("%d-byte body accepted", len(body))
		}
		if addr == "" || addr != strings.TrimSpace(addr) {
			t.Fatalf("address %q", addr)
		}
	})
}
