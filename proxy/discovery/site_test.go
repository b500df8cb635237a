package discovery

// Test sites. oauthSite: two domains, IMAP 993/143, POP3 995, SMTP 465/587,
// Sieve 4190, OAuth published, passwords on IMAP only. passwordSite: the
// same servers, no OAuth, passwords everywhere.

func oauthSite() Site {
	return Site{
		Domains:     []string{"example.com", "example.org"},
		DisplayName: "Example Mail",
		Servers: []Server{
			{Protocol: IMAP, Host: "mail.example.com", Port: 993, Security: ImplicitTLS, Passwords: true},
			{Protocol: IMAP, Host: "mail.example.com", Port: 143, Security: StartTLS, Passwords: true},
			{Protocol: POP3, Host: "mail.example.com", Port: 995, Security: ImplicitTLS},
			{Protocol: SMTP, Host: "smtp.example.com", Port: 465, Security: ImplicitTLS},
			{Protocol: SMTP, Host: "smtp.example.com", Port: 587, Security: StartTLS},
			{Protocol: Sieve, Host: "mail.example.com", Port: 4190, Security: StartTLS},
		},
		OAuth: &OAuth{
			Issuer:   "https://id.example.com/realms/mail",
			AuthURL:  "https://id.example.com/realms/mail/auth",
			TokenURL: "https://id.example.com/realms/mail/token",
			ClientID: "thunderbird",
			Scopes:   []string{"openid", "email", "offline_access"},
		},
	}
}

func passwordSite() Site {
	s := oauthSite()
	s.OAuth = nil
	s.DisplayName = ""
	s.Servers = append([]Server(nil), s.Servers...)
	for i := range s.Servers {
		s.Servers[i].Passwords = true
	}
	return s
}
