<?php
// Roundcube OAuth settings (mounted as config/oauth.inc.php). Roundcube logs the
// user in at the provider, then uses the access token for IMAP and SMTP through
// mailgate (XOAUTH2 or OAUTHBEARER).
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
$config['oauth_auth_type'] = 'XOAUTH2';         // or OAUTHBEARER; mailgate accepts both
