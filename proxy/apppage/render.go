package apppage

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

//go:embed assets
var assets embed.FS

var pageTemplates = template.Must(template.New("").
	Funcs(template.FuncMap{"label": protocolLabel}).
	ParseFS(assets, "assets/page.html"))

// asset serves an embedded file.
func asset(name, contentType string) http.HandlerFunc {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(b)
	}
}

// view is what the templates show; the zero value of a field hides its
// part.
type view struct {
	Title, Root string
	User, CSRF  string // signed in
	Message     string
	SignIn      bool
	Notice      string
	Suspended   string // when the provider refused the user's refresh token
	Records     []recordView
	Protocols   []apppass.Protocol
	Expiries    []expiryOption
	Links       []Link
	Addon       bool
	Created     *recordView
	Password    string
}

type recordView struct {
	ID, Name, Protocols, Created, Expires, LastUsed string
	Expired                                         bool
}

type expiryOption struct {
	Days  int
	Label string
}

// messagePage is a sentence, maybe with the sign-in button.
type messagePage struct {
	Message string
	SignIn  bool
}

func (h *Handler) page(m messagePage) view {
	return view{Message: m.Message, SignIn: m.SignIn}
}

func (h *Handler) signedInView(s signedIn) view {
	v := view{User: s.User, CSRF: s.CSRF, Addon: h.opts.Addon != nil && len(h.opts.Addon()) > 0}
	if h.opts.Links != nil {
		v.Links = h.opts.Links(s.User)
	}
	return v
}

func (h *Handler) listPage(s signedIn, recs []apppass.Record, notice string) view {
	v := h.signedInView(s)
	v.Notice = notice
	now := h.opts.Now()
	for _, rec := range recs {
		v.Records = append(v.Records, recordOf(rec, now))
	}
	v.Protocols = h.opts.Protocols
	if len(v.Protocols) == 0 {
		v.Protocols = apppass.AllProtocols()
	}
	v.Expiries = h.expiries()
	return v
}

func (h *Handler) createdPage(s signedIn, rec apppass.Record, pw string) view {
	v := h.signedInView(s)
	rv := recordOf(rec, h.opts.Now())
	v.Created, v.Password = &rv, pw
	return v
}

// expiries are the lifetimes offered, within MaxExpiry.
func (h *Handler) expiries() []expiryOption {
	first := expiryOption{0, "Never expires"}
	switch def := h.opts.DefaultExpiry; {
	case def > 0:
		first.Label = "In " + days(def) + " (the default)"
	case h.opts.MaxExpiry > 0:
		first.Label = "The longest allowed (" + days(h.opts.MaxExpiry) + ")"
	}
	out := []expiryOption{first}
	for _, d := range []int{7, 30, 90, 365} {
		if h.opts.MaxExpiry == 0 || time.Duration(d)*24*time.Hour < h.opts.MaxExpiry {
			out = append(out, expiryOption{d, days(time.Duration(d) * 24 * time.Hour)})
		}
	}
	return out
}

func days(d time.Duration) string {
	n := int(d / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	return strconv.Itoa(n) + " days"
}

func recordOf(rec apppass.Record, now time.Time) recordView {
	rv := recordView{ID: rec.ID, Name: rec.Name, Created: stamp(rec.Created), Expires: "never", LastUsed: "never", Expired: rec.Expired(now)}
	ps := make([]string, len(rec.Protocols))
	for i, p := range rec.Protocols {
		ps[i] = protocolLabel(p)
	}
	rv.Protocols = strings.Join(ps, ", ")
	if !rec.Expires.IsZero() {
		rv.Expires = stamp(rec.Expires)
	}
	if !rec.LastUsed.IsZero() {
		rv.LastUsed = stamp(rec.LastUsed)
		if rec.LastAddr != "" {
			rv.LastUsed += " from " + rec.LastAddr
		}
	}
	return rv
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// protocolLabel is how the page names a protocol.
func protocolLabel(p apppass.Protocol) string {
	switch p {
	case apppass.IMAP:
		return "IMAP (read mail)"
	case apppass.SMTP:
		return "SMTP (send mail)"
	case apppass.POP3:
		return "POP3 (download mail)"
	case apppass.ManageSieve:
		return "ManageSieve (filters)"
	}
	return string(p)
}

// render executes the template name into a buffer first, so that a
// template error never sends half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, v view) {
	v.Title, v.Root = h.opts.Title, h.root
	var b bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&b, name, v); err != nil {
		h.log.Error("app passwords page: template", "name", name, "err", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}
