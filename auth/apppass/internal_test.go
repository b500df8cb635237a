package apppass

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The parser accepts exactly what newPassword makes, in any letter case.
func TestParsePassword(t *testing.T) {
	pw := newPassword()
	if len(pw.value) != passwordLen || passwordLen != 53 || !strings.HasPrefix(pw.value, Prefix+pw.id+"_") {
		t.Fatalf("newPassword = %+v", pw)
	}
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{pw.value, true},
		{strings.ToUpper(pw.value), true},
		{"mgp_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", true},
		{"mgp_k5vqa2hxo3dpgmzt_3f7xq2mbwnyk4c6rj5hdtluapezso7gi", true}, // the package doc's example
		{"mgp_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb8", false},
		{"mgp_aaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false},
		{"mgp_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb_", false},
		{"mgp__aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false},
		{"xgp_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false},
		{"correct horse battery staple and more words to fill", false},
		{"", false},
	} {
		got, ok := parsePassword(tt.in)
		if ok != tt.ok {
			t.Errorf("parsePassword(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		if ok && (got.value != strings.ToLower(tt.in) || got.id != strings.ToLower(tt.in[4:20])) {
			t.Errorf("parsePassword(%q) = %+v", tt.in, got)
		}
	}
}

// FuzzParsePassword: whatever is accepted has the documented form.
func FuzzParsePassword(f *testing.F) {
	f.Add(newPassword().value)
	f.Add("hunter2")
	f.Add("MGP_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parsePassword(s)
		if !ok {
			return
		}
		if len(p.value) != passwordLen || !strings.HasPrefix(p.value, Prefix) || p.value[20] != '_' ||
			p.id != p.value[4:20] || !validID(p.id) || !inAlphabet(p.value[21:]) || !strings.EqualFold(p.value, s) {
			t.Fatalf("parsePassword(%q) = %+v", s, p)
		}
	})
}

// Argon2id encodes its parameters; Compare uses the stored ones and
// refuses damaged or hostile encodings.
func TestArgon2id(t *testing.T) {
	cheap := Argon2id{Time: 1, MemoryKiB: 64}
	enc, err := cheap.Hash([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("encoded %q", enc)
	}
	// The default hasher verifies a hash made with other parameters.
	if ok, err := (Argon2id{}).Compare([]byte("pw"), enc); !ok || err != nil {
		t.Errorf("Compare right = %v, %v", ok, err)
	}
	if ok, err := (Argon2id{}).Compare([]byte("pX"), enc); ok || err != nil {
		t.Errorf("Compare wrong = %v, %v", ok, err)
	}
	def, _ := Argon2id{}.Hash([]byte("pw"))
	if !strings.HasPrefix(def, "$argon2id$v=19$m=19456,t=2,p=1$") || len(strings.Split(def, "$")[4]) != 22 || len(strings.Split(def, "$")[5]) != 43 {
		t.Errorf("default encoding %q", def)
	}
	parts := strings.Split(enc, "$")
	for _, bad := range []string{
		"", "$argon2i$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=4194304,t=1,p=1$" + parts[4] + "$" + parts[5], // 4 GiB
		"$argon2id$v=19$m=64,t=1000,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1,x=2$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5][:8],
		"$argon2id$v=19$m=64,t=1,p=1$!!$" + parts[5],
	} {
		if _, err := (Argon2id{}).Compare([]byte("pw"), bad); !errors.Is(err, errEncoding) {
			t.Errorf("Compare(%q) = %v, want errEncoding", bad, err)
		}
	}
}

// The measured cost of one default hash, for the package doc.
func TestArgon2idCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures time")
	}
	enc, _ := Argon2id{}.Hash([]byte("pw"))
	var best time.Duration
	for i := range 5 {
		t0 := time.Now()
		(Argon2id{}).Compare([]byte("pw"), enc)
		if d := time.Since(t0); i == 0 || d < best {
			best = d
		}
	}
	t.Logf("one default argon2id hash: %v (best of 5)", best)
	if best > time.Second {
		t.Errorf("one hash takes %v", best)
	}
}

// Both dialects have the same migrations.
func TestMigrationsInStep(t *testing.T) {
	a, err1 := loadMigrations(sqliteDialect.migrations)
	b, err2 := loadMigrations(postgresDialect.migrations)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d sqlite migrations, %d postgres", len(a), len(b))
	}
	for i := range a {
		if a[i].name != b[i].name {
			t.Errorf("migration %d: %s vs %s", i+1, a[i].name, b[i].name)
		}
	}
}

// Database URLs: the accepted forms, and no password in any error.
func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		url, dialect, path string
		memory             bool
	}{
		{"sqlite:///var/lib/mailgate/apppass.db", "sqlite", "/var/lib/mailgate/apppass.db", false},
		{"sqlite:apppass.db", "sqlite", "apppass.db", false},
		{"sqlite::memory:", "sqlite", ":memory:", true},
		{"postgres://u:pw@db.example.test/mailgate?sslmode=verify-full", "postgres", "", false},
		{"postgresql://db.example.test/mailgate", "postgres", "", false},
	} {
		tg, err := parseURL(tt.url, time.Second)
		if err != nil || tg.d.name != tt.dialect || tg.memory != tt.memory || strings.Contains(tg.redacted, "pw") {
			t.Errorf("parseURL(%q) = %+v, %v", tt.url, tg, err)
			continue
		}
		if tt.path != "" && !strings.HasPrefix(tg.dsn, tt.path+"?") {
			t.Errorf("parseURL(%q) dsn %q", tt.url, tg.dsn)
		}
		if tt.dialect == "sqlite" && (!strings.Contains(tg.dsn, "busy_timeout%281000%29") || !strings.Contains(tg.dsn, "_txlock=immediate")) {
			t.Errorf("parseURL(%q) dsn %q lacks busy_timeout or _txlock", tt.url, tg.dsn)
		}
	}
	for _, bad := range []string{"mysql://u:secretpw@h/db", "sqlite://host/x.db", "sqlite:", "sqlite:///x.db?mode=ro", "://secretpw@"} {
		if _, err := parseURL(bad, time.Second); err == nil || strings.Contains(err.Error(), "secretpw") {
			t.Errorf("parseURL(%q) = %v", bad, err)
		}
	}
}
