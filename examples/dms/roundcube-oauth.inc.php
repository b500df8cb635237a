<?php
// Roundcube OAuth settings (mounted as config/oauth.inc.php). Roundcube logs the
// user in at the provider, then uses the access token for IMAP, SMTP and
// ManageSieve through mailgate (XOAUTH2 or OAUTHBEARER).
$config['oauth_provider'] = 'generic';
$config['oauth_provider_name'] = 'Example SSO';
$config['oauth_client_id'] = 'roundcube';
$config['oauth_client_secret'] = trim(file_get_contents('/run/secrets/oauth_client_secret'));
// Authentik:
$config['oauth_auth_uri'] = 'https://auth.example.com/application/o/authorize/';
$config['oauth_token_uri'] = 'https://auth.example.com/application/o/token/';
$config['oauth_identity_uri'] = 'https://auth.example.com/application/o/userinfo/';
// Keycloak instead: https://auth.example.com/realms/example/protocol/openid-connect/{auth,token,userinfo}
$config['oauth_scope'] = 'openid email profile offline_access';
$config['oauth_identity_fields'] = ['email'];   // must name the same mailbox as mailgate's oauth2.username_claim
// Roundcube 1.7+ (or OAUTHBEARER; mailgate accepts both). Roundcube 1.6 has no
// such key and always uses XOAUTH2.
$config['oauth_auth_type'] = 'XOAUTH2';

// TLS towards mailgate: Roundcube connects to the host "mailgate" (compose.yaml),
// while mailgate's certificate names mail.example.com; check it against that name.
$mailgate_tls = ['ssl' => ['verify_peer' => true, 'verify_peer_name' => true, 'peer_name' => 'mail.example.com']];
$config['imap_conn_options'] = $mailgate_tls;
$config['smtp_conn_options'] = $mailgate_tls;

// Managesieve plugin (Filters, Out of office), enabled by ROUNDCUBEMAIL_PLUGINS in
// compose.yaml. mailgate's port 4190 is plaintext with STARTTLS required before
// AUTHENTICATE: tls:// makes the plugin send STARTTLS (ssl:// would expect
// implicit TLS, which mailgate does not offer on 4190; without a prefix the
// plugin never starts TLS and finds no SASL mechanism to use).
$config['managesieve_host'] = 'tls://mailgate:4190';
// Leave null: after an OAuth login Roundcube picks the mechanism itself and
// passes "Bearer <access token>" as the password. 1.6 forces XOAUTH2
// (rcmail_oauth::managesieve_connect); 1.7 uses oauth_auth_type above.
$config['managesieve_auth_type'] = null;
$config['managesieve_conn_options'] = $mailgate_tls;
$config['managesieve_vacation'] = 1;            // the Out of office tab as well as Filters
