package discovery

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// WebEndpoint is where clients reach the discovery listener: the public
// name and port, as they see them (behind a reverse proxy, the proxy's).
type WebEndpoint struct {
	// Host is the public host name (mail.example.com).
	Host string
	// Port is the public HTTPS port (clients fetch Autodiscover by SRV and
	// PACC over HTTPS only). Zero: 443.
	Port int
}

func (w WebEndpoint) port() int {
	if w.Port != 0 {
		return w.Port
	}
	return 443
}

// Record is one DNS record an operator publishes.
type Record struct {
	Name  string // owner name, fully qualified with the final dot
	Type  string // SRV, CNAME or TXT
	Value string // zone-file data; for TXT the bare text (WriteZone quotes it)
	// Comment says what the record is for; WriteZone prints it above.
	Comment string
}

// SRV service labels of each protocol and security: RFC 6186 and RFC 8314
// (mail), RFC 5804 (ManageSieve, STARTTLS only).
var srvLabels = map[Protocol]map[Security]string{
	IMAP:  {ImplicitTLS: "_imaps._tcp", StartTLS: "_imap._tcp"},
	POP3:  {ImplicitTLS: "_pop3s._tcp", StartTLS: "_pop3._tcp"},
	SMTP:  {ImplicitTLS: "_submissions._tcp", StartTLS: "_submission._tcp"},
	Sieve: {StartTLS: "_sieve._tcp"},
}

// protocolNames are the protocols as comments name them.
var protocolNames = map[Protocol]string{IMAP: "IMAP", POP3: "POP3", SMTP: "Submission", Sieve: "ManageSieve"}

// srvPriority puts implicit TLS first (RFC 8314 section 5.1), then the
// site's order among servers of one label.
const (
	srvPriorityTLS      = 0
	srvPriorityStartTLS = 10
)

// DNSRecords are the records that let clients find site's servers and the
// discovery documents served at web, for every domain of site: SRV records
// per server, autoconfig/autodiscover/ua-auto-config names pointing at the
// discovery host, the Autodiscover SRV record, and the PACC digest (of the
// bytes the handler serves for this same site: publish again after a change
// of the site). The discovery listener's certificate must cover the
// autoconfig., autodiscover. and ua-auto-config. names.
func DNSRecords(site Site, web WebEndpoint) []Record {
	var out []Record
	digest := ""
	if body, err := paccDocument(site); err == nil {
		digest = paccDigestRecord(body)
	}
	for _, d := range site.Domains {
		out = append(out, srvRecords(site, d)...)
		out = append(out, webRecords(d, web, digest)...)
	}
	return out
}

// srvRecords are domain's SRV records for the mail and Sieve servers.
func srvRecords(site Site, domain string) []Record {
	var out []Record
	seen := map[string]int{}
	for _, s := range site.Servers {
		label, ok := srvLabels[s.Protocol][s.Security]
		if !ok {
			continue
		}
		prio := srvPriorityStartTLS
		if s.Security == ImplicitTLS {
			prio = srvPriorityTLS
		}
		prio += seen[label]
		seen[label]++
		out = append(out, Record{
			Name:    label + "." + fqdn(domain),
			Type:    "SRV",
			Value:   fmt.Sprintf("%d 1 %d %s", prio, s.Port, fqdn(s.Host)),
			Comment: srvComment(s),
		})
	}
	return out
}

func srvComment(s Server) string {
	rfc := "RFC 6186, RFC 8314"
	if s.Protocol == Sieve {
		rfc = "RFC 5804"
	}
	sec := "STARTTLS"
	if s.Security == ImplicitTLS {
		sec = "implicit TLS"
	}
	return fmt.Sprintf("%s with %s (%s)", protocolNames[s.Protocol], sec, rfc)
}

// webRecords point domain's discovery names at web.
func webRecords(domain string, web WebEndpoint, paccDigest string) []Record {
	target := fqdn(web.Host)
	var out []Record
	cname := func(label, comment string) {
		if name := label + fqdn(domain); !strings.EqualFold(name, target) {
			out = append(out, Record{Name: name, Type: "CNAME", Value: target, Comment: comment})
		}
	}
	cname("autoconfig.", "Thunderbird autoconfig ("+autoconfigPath+"); the certificate must name it")
	cname("autodiscover.", "Outlook Autodiscover ("+autodiscoverPath+"); the certificate must name it")
	out = append(out, Record{
		Name: "_autodiscover._tcp." + fqdn(domain), Type: "SRV",
		Value:   "0 0 " + strconv.Itoa(web.port()) + " " + target,
		Comment: "Outlook Autodiscover by SRV, over HTTPS",
	})
	if paccDigest == "" {
		return out
	}
	cname(paccHostPrefix, "PACC (draft-ietf-mailmaint-pacc) document host; the certificate must name it")
	out = append(out, Record{
		Name: paccTXTLabel + fqdn(domain), Type: "TXT", Value: paccDigest,
		Comment: "PACC: SHA-256 of the exact document served; publish again when the site changes",
	})
	return out
}

// fqdn adds the final dot.
func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// WriteZone prints records as zone-file lines (name, class, type, data,
// separated by tabs), each after a "; " line with its comment. TXT values
// are quoted, in strings of at most 255 bytes.
func WriteZone(w io.Writer, records []Record) error {
	var b strings.Builder
	for _, r := range records {
		if r.Comment != "" {
			fmt.Fprintf(&b, "; %s\n", r.Comment)
		}
		v := r.Value
		if r.Type == "TXT" {
			v = quoteTXT(v)
		}
		fmt.Fprintf(&b, "%s\tIN\t%s\t%s\n", r.Name, r.Type, v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// quoteTXT is s as zone-file character-strings of at most 255 bytes, with
// quotes and backslashes escaped.
func quoteTXT(s string) string {
	var parts []string
	for len(s) > 0 {
		n := min(len(s), 255)
		chunk := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s[:n])
		parts = append(parts, `"`+chunk+`"`)
		s = s[n:]
	}
	if len(parts) == 0 {
		return `""`
	}
	return strings.Join(parts, " ")
}

// AutoconfigURL is where the records of DNSRecords publish the autoconfig
// document of address's domain: https://autoconfig.<domain>/mail/config-v1.1.xml.
func AutoconfigURL(address string) string {
	return docURL(address, autoconfigPath)
}

// MobileconfigURL is the Apple configuration profile of address on the
// autoconfig host of its domain.
func MobileconfigURL(address string) string {
	return docURL(address, mobileconfigPath)
}

func docURL(address, path string) string {
	_, domain, _ := strings.Cut(address, "@")
	u := url.URL{Scheme: "https", Host: "autoconfig." + strings.ToLower(domain), Path: path,
		RawQuery: url.Values{"emailaddress": {address}}.Encode()}
	return u.String()
}
