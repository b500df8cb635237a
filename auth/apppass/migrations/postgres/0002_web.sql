-- Sessions and sign-ins of the self-service page (PostgreSQL). Times are
-- microseconds since 1970 UTC. Keep in step with ../sqlite/0002_web.sql.

CREATE TABLE web_sessions (
	id_hash    BYTEA  NOT NULL PRIMARY KEY, -- SHA-256 of the session id (the cookie)
	username   TEXT   NOT NULL,             -- mailbox address, lower case
	csrf       TEXT   NOT NULL,             -- anti-CSRF token of the page's forms
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);

CREATE INDEX web_sessions_username ON web_sessions (username);

CREATE TABLE web_signins (
	state_hash BYTEA  NOT NULL PRIMARY KEY, -- SHA-256 of the OAuth state (in the browser's cookie)
	verifier   TEXT   NOT NULL,             -- PKCE code verifier, until the sign-in completes
	expires_at BIGINT NOT NULL
);

-- Every BeginSignIn deletes the expired sign-ins.
CREATE INDEX web_signins_expires ON web_signins (expires_at);
