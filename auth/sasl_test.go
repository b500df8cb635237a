package auth

import (
	"errors"
	"strings"
	"testing"
)

const testToken = "ya29.a0AfB_byC-token.with_chars~+/=="

func TestDecodeXOAUTH2(t *testing.T) {
	long := "user=u\x01auth=Bearer " + strings.Repeat("a", MaxSASLMessage) + "\x01\x01"
	tests := []struct {
		name      string
		msg       string
		user, tok string // want; empty tok = want ErrMalformed
	}{
		{"thunderbird/roundcube", "user=alice@example.com\x01auth=Bearer " + testToken + "\x01\x01", "alice@example.com", testToken},
		{"bearer lower case", "user=a\x01auth=bearer tok\x01\x01", "a", "tok"},
		{"bearer upper case", "user=a\x01auth=BEARER tok\x01\x01", "a", "tok"},
		{"several spaces", "user=a\x01auth=Bearer   tok\x01\x01", "a", "tok"},
		{"missing final \\x01", "user=a\x01auth=Bearer tok\x01", "a", "tok"},
		{"auth first", "auth=Bearer tok\x01user=a\x01\x01", "a", "tok"},
		{"old curl host/port", "user=a\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01", "a", "tok"},
		{"empty user", "user=\x01auth=Bearer tok\x01\x01", "", "tok"},
		{"user with =", "user=a=b\x01auth=Bearer tok\x01\x01", "a=b", "tok"},
		{"utf-8 user", "user=jürgen@example.com\x01auth=Bearer tok\x01\x01", "jürgen@example.com", "tok"},

		{"empty", "", "", ""},
		{"only separators", "\x01\x01", "", ""},
		{"no terminator", "user=a\x01auth=Bearer tok", "", ""},
		{"three terminators", "user=a\x01auth=Bearer tok\x01\x01\x01", "", ""},
		{"empty field in middle", "user=a\x01\x01auth=Bearer tok\x01\x01", "", ""},
		{"missing user", "auth=Bearer tok\x01\x01", "", ""},
		{"missing auth", "user=a\x01\x01", "", ""},
		{"empty token", "user=a\x01auth=Bearer \x01\x01", "", ""},
		{"no token", "user=a\x01auth=Bearer\x01\x01", "", ""},
		{"no space", "user=a\x01auth=Bearertok\x01\x01", "", ""},
		{"basic scheme", "user=a\x01auth=Basic dXNlcjpwYXNz\x01\x01", "", ""},
		{"space in token", "user=a\x01auth=Bearer to k\x01\x01", "", ""},
		{"tab in token", "user=a\x01auth=Bearer to\tk\x01\x01", "", ""},
		{"non-ascii token", "user=a\x01auth=Bearer tök\x01\x01", "", ""},
		{"NUL in user", "user=a\x00b\x01auth=Bearer tok\x01\x01", "", ""},
		{"CR in user", "user=a\rb\x01auth=Bearer tok\x01\x01", "", ""},
		{"LF in token", "user=a\x01auth=Bearer to\nk\x01\x01", "", ""},
		{"LF in unknown field", "user=a\x01x=\n\x01auth=Bearer tok\x01\x01", "", ""},
		{"duplicate user", "user=a\x01user=b\x01auth=Bearer tok\x01\x01", "", ""},
		{"duplicate auth", "user=a\x01auth=Bearer t1\x01auth=Bearer t2\x01\x01", "", ""},
		{"field without =", "user=a\x01junk\x01auth=Bearer tok\x01\x01", "", ""},
		{"empty key", "user=a\x01=x\x01auth=Bearer tok\x01\x01", "", ""},
		{"invalid utf-8 user", "user=\xff\x01auth=Bearer tok\x01\x01", "", ""},
		{"too long", long, "", ""},
		{"oauthbearer message", "n,a=a,\x01auth=Bearer tok\x01\x01", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, tok, err := DecodeXOAUTH2([]byte(tt.msg))
			checkDecode(t, err, tt.tok == "", []string{user, tok}, []string{tt.user, tt.tok})
		})
	}
}

func TestDecodeOAUTHBEARER(t *testing.T) {
	tests := []struct {
		name       string
		msg        string
		authz, tok string // want; empty tok = want ErrMalformed
	}{
		{"roundcube", "n,a=alice@example.com,\x01auth=Bearer " + testToken + "\x01\x01", "alice@example.com", testToken},
		{"curl host+port", "n,a=alice@example.com,\x01host=127.0.0.1\x01port=143\x01auth=Bearer tok\x01\x01", "alice@example.com", "tok"},
		{"curl host only", "n,a=alice@example.com,\x01host=imap.example.com\x01auth=Bearer tok\x01\x01", "alice@example.com", "tok"},
		{"imapflow host+port", "n,a=alice@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01", "alice@example.com", "tok"},
		{"auth first", "n,a=a,\x01auth=Bearer tok\x01host=h\x01\x01", "a", "tok"},
		{"no authzid", "n,,\x01auth=Bearer tok\x01\x01", "", "tok"},
		{"y flag", "y,,\x01auth=Bearer tok\x01\x01", "", "tok"},
		{"escapes", "n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01", "a,b=c", "tok"},
		{"bearer lower case", "n,,\x01auth=bearer tok\x01\x01", "", "tok"},
		{"unknown kvpair", "n,,\x01foo=bar baz\x01mthd=x\x01auth=Bearer tok\x01\x01", "", "tok"},
		{"empty value kvpair", "n,,\x01host=\x01auth=Bearer tok\x01\x01", "", "tok"},
		{"CR in unknown value (RFC allows)", "n,,\x01foo=a\r\nb\x01auth=Bearer tok\x01\x01", "", "tok"},

		{"empty", "", "", ""},
		{"dummy reply", "\x01", "", ""},
		{"channel binding", "p=tls-unique,,\x01auth=Bearer tok\x01\x01", "", ""},
		{"nonstd flag", "F,n,,\x01auth=Bearer tok\x01\x01", "", ""},
		{"bad flag", "x,,\x01auth=Bearer tok\x01\x01", "", ""},
		{"bad authzid prefix", "n,u=a,\x01auth=Bearer tok\x01\x01", "", ""},
		{"empty authzid", "n,a=,\x01auth=Bearer tok\x01\x01", "", ""},
		{"bad escape", "n,a=a=2Xb,\x01auth=Bearer tok\x01\x01", "", ""},
		{"lower-case escape", "n,a=a=2cb,\x01auth=Bearer tok\x01\x01", "", ""},
		{"truncated escape", "n,a=a=2,\x01auth=Bearer tok\x01\x01", "", ""},
		{"CR in authzid", "n,a=a\rb,\x01auth=Bearer tok\x01\x01", "", ""},
		{"invalid utf-8 authzid", "n,a=\xff,\x01auth=Bearer tok\x01\x01", "", ""},
		{"header only", "n,,", "", ""},
		{"no kvsep after header", "n,,auth=Bearer tok\x01\x01", "", ""},
		{"single terminator", "n,,\x01auth=Bearer tok\x01", "", ""},
		{"no terminator", "n,,\x01auth=Bearer tok", "", ""},
		{"no kvpairs", "n,,\x01\x01", "", ""},
		{"missing auth", "n,,\x01host=h\x01\x01", "", ""},
		{"empty token", "n,,\x01auth=Bearer \x01\x01", "", ""},
		{"basic scheme", "n,,\x01auth=Basic abc\x01\x01", "", ""},
		{"duplicate auth", "n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01", "", ""},
		{"empty kvpair", "n,,\x01host=h\x01\x01auth=Bearer tok\x01\x01", "", ""},
		{"kvpair without =", "n,,\x01host\x01auth=Bearer tok\x01\x01", "", ""},
		{"non-alpha key", "n,,\x01ho-st=h\x01auth=Bearer tok\x01\x01", "", ""},
		{"NUL in value", "n,,\x01host=\x00\x01auth=Bearer tok\x01\x01", "", ""},
		{"LF in token", "n,,\x01auth=Bearer to\nk\x01\x01", "", ""},
		{"xoauth2 message", "user=a\x01auth=Bearer tok\x01\x01", "", ""},
		{"too long", "n,,\x01x=" + strings.Repeat("a", MaxSASLMessage) + "\x01auth=Bearer tok\x01\x01", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authz, tok, err := DecodeOAUTHBEARER([]byte(tt.msg))
			checkDecode(t, err, tt.tok == "", []string{authz, tok}, []string{tt.authz, tt.tok})
		})
	}
}

func TestDecodePLAIN(t *testing.T) {
	tests := []struct {
		name   string
		msg    string
		want   []string // nil = want ErrMalformed
		encode bool     // EncodePLAIN(want...) must give msg back
	}{
		{"authzid", "alice@example.com\x00master\x00s3cret", []string{"alice@example.com", "master", "s3cret"}, true},
		{"no authzid", "\x00alice\x00pw", []string{"", "alice", "pw"}, true},
		{"password with CRLF and space", "\x00alice\x00p w\r\n", []string{"", "alice", "p w\r\n"}, true},
		{"utf-8", "\x00jürgen\x00pässwort", []string{"", "jürgen", "pässwort"}, true},

		{"empty", "", nil, false},
		{"one NUL", "alice\x00pw", nil, false},
		{"three NULs", "a\x00b\x00c\x00d", nil, false},
		{"empty authcid", "a\x00\x00pw", nil, false},
		{"empty password", "\x00alice\x00", nil, false},
		{"LF in authcid", "\x00ali\nce\x00pw", nil, false},
		{"CR in authzid", "a\rb\x00alice\x00pw", nil, false},
		{"invalid utf-8 authcid", "\x00\xff\x00pw", nil, false},
		{"too long", "\x00a\x00" + strings.Repeat("p", MaxSASLMessage), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, c, p, err := DecodePLAIN([]byte(tt.msg))
			checkDecode(t, err, tt.want == nil, []string{z, c, p}, tt.want)
			if tt.encode {
				if got := EncodePLAIN(tt.want[0], tt.want[1], tt.want[2]); string(got) != tt.msg {
					t.Errorf("EncodePLAIN = %q, want %q", got, tt.msg)
				}
			}
		})
	}
}

func TestEncoders(t *testing.T) {
	u, tok, err := DecodeXOAUTH2(EncodeXOAUTH2("alice@example.com", testToken))
	if err != nil || u != "alice@example.com" || tok != testToken {
		t.Errorf("XOAUTH2 round trip = %q, %q, %v", u, tok, err)
	}
	for _, authz := range []string{"", "alice@example.com", "a,b=c==,"} {
		z, tok, err := DecodeOAUTHBEARER(EncodeOAUTHBEARER(authz, testToken))
		if err != nil || z != authz || tok != testToken {
			t.Errorf("OAUTHBEARER round trip(%q) = %q, %q, %v", authz, z, tok, err)
		}
	}
	if got, want := string(EncodeOAUTHBEARER("a,b", "t")), "n,a=a=2Cb,\x01auth=Bearer t\x01\x01"; got != want {
		t.Errorf("EncodeOAUTHBEARER = %q, want %q", got, want)
	}
}

// TestDecodeErrorsHideInput checks that error texts never echo the message
// (which holds a token or password).
func TestDecodeErrorsHideInput(t *testing.T) {
	const secret = "SECRETSECRET"
	msgs := []string{
		"user=a\x01auth=Basic " + secret + "\x01\x01",
		"user=a\x01auth=Bearer " + secret + " x\x01\x01",
		"n,a=" + secret + "=,\x01auth=Bearer x\x01\x01",
		"n,,\x01" + secret + "\x01\x01",
		secret,
	}
	for _, m := range msgs {
		_, _, err1 := DecodeXOAUTH2([]byte(m))
		_, _, err2 := DecodeOAUTHBEARER([]byte(m))
		_, _, _, err3 := DecodePLAIN([]byte(m))
		for _, err := range []error{err1, err2, err3} {
			if err == nil || strings.Contains(err.Error(), secret) {
				t.Errorf("decode(%q) error = %v; want an error without the input", m, err)
			}
		}
	}
}

func checkDecode(t *testing.T, err error, wantErr bool, got, want []string) {
	t.Helper()
	if wantErr {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("err = %v, want ErrMalformed (got %q)", err, got)
		}
		for _, g := range got {
			if g != "" {
				t.Errorf("on error got non-empty result %q", got)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d = %q, want %q", i, got[i], want[i])
		}
	}
}
