package discovery

import (
	"strings"
	"testing"
)

func TestDNSRecords(t *testing.T) {
	site := oauthSite()
	recs := DNSRecords(site, WebEndpoint{Host: "mail.example.com"})
	digest := paccDigestRecord(must(paccDocument(site)))
	for _, d := range site.Domains {
		want := []Record{
			{Name: "_imaps._tcp." + d + ".", Type: "SRV", Value: "0 1 993 mail.example.com."},
			{Name: "_imap._tcp." + d + ".", Type: "SRV", Value: "10 1 143 mail.example.com."},
			{Name: "_pop3s._tcp." + d + ".", Type: "SRV", Value: "0 1 995 mail.example.com."},
			{Name: "_submissions._tcp." + d + ".", Type: "SRV", Value: "0 1 465 smtp.example.com."},
			{Name: "_submission._tcp." + d + ".", Type: "SRV", Value: "10 1 587 smtp.example.com."},
			{Name: "_sieve._tcp." + d + ".", Type: "SRV", Value: "10 1 4190 mail.example.com."},
			{Name: "autoconfig." + d + ".", Type: "CNAME", Value: "mail.example.com."},
			{Name: "autodiscover." + d + ".", Type: "CNAME", Value: "mail.example.com."},
			{Name: "_autodiscover._tcp." + d + ".", Type: "SRV", Value: "0 0 443 mail.example.com."},
			{Name: "ua-auto-config." + d + ".", Type: "CNAME", Value: "mail.example.com."},
			{Name: "_ua-auto-config." + d + ".", Type: "TXT", Value: digest},
		}
		for _, w := range want {
			if !hasRecord(recs, w) {
				t.Errorf("no %s %s %s", w.Name, w.Type, w.Value)
			}
		}
	}
	if n := 11 * len(site.Domains); len(recs) != n {
		t.Errorf("%d records, want %d", len(recs), n)
	}
	for _, r := range recs {
		if r.Comment == "" {
			t.Errorf("%s %s has no comment", r.Name, r.Type)
		}
		if strings.HasPrefix(r.Name, "_pop3._tcp") {
			t.Error("_pop3._tcp published without a POP3 STARTTLS server")
		}
	}
}

func TestDNSRecordsEndpoint(t *testing.T) {
	site := passwordSite()
	recs := DNSRecords(site, WebEndpoint{Host: "web.example.net.", Port: 8443})
	if !hasRecord(recs, Record{Name: "_autodiscover._tcp.example.org.", Type: "SRV", Value: "0 0 8443 web.example.net."}) {
		t.Error("the Autodiscover SRV record does not name port 8443")
	}
	// The discovery host is itself autoconfig.<domain>: no CNAME to itself.
	self := DNSRecords(site, WebEndpoint{Host: "autoconfig.example.com"})
	for _, r := range self {
		if r.Type == "CNAME" && r.Name == r.Value {
			t.Errorf("CNAME %s to itself", r.Name)
		}
	}
	// No PACC document: no PACC records.
	site.Servers = site.Servers[1:2] // IMAP 143 only
	for _, r := range DNSRecords(site, WebEndpoint{Host: "web.example.net"}) {
		if strings.Contains(r.Name, "ua-auto-config.") {
			t.Errorf("PACC record %s without a document", r.Name)
		}
	}
}

func TestWriteZone(t *testing.T) {
	var b strings.Builder
	err := WriteZone(&b, []Record{
		{Name: "_imaps._tcp.example.com.", Type: "SRV", Value: "0 1 993 mail.example.com.", Comment: "IMAP"},
		{Name: "_x.example.com.", Type: "TXT", Value: `a "q" \ ` + strings.Repeat("z", 300)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first TXT string holds the 8 bytes of `a "q" \ ` and 247 z: 255.
	want := "; IMAP\n_imaps._tcp.example.com.\tIN\tSRV\t0 1 993 mail.example.com.\n" +
		"_x.example.com.\tIN\tTXT\t\"a \\\"q\\\" \\\\ " + strings.Repeat("z", 247) + "\" \"" + strings.Repeat("z", 53) + "\"\n"
	if b.String() != want {
		t.Errorf("WriteZone =\n%s\nwant\n%s", b.String(), want)
	}
}

func hasRecord(recs []Record, w Record) bool {
	for _, r := range recs {
		if r.Name == w.Name && r.Type == w.Type && r.Value == w.Value {
			return true
		}
	}
	return false
}

func TestDocumentURLs(t *testing.T) {
	if got, want := AutoconfigURL("Alice+x@Example.ORG"), "https://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=Alice%2Bx%40Example.ORG"; got != want {
		t.Errorf("AutoconfigURL = %s, want %s", got, want)
	}
	if got, want := MobileconfigURL("bob@example.org"), "https://autoconfig.example.org/mail/mailgate.mobileconfig?emailaddress=bob%40example.org"; got != want {
		t.Errorf("MobileconfigURL = %s, want %s", got, want)
	}
}
