-- App passwords and provider links (SQLite). Times are microseconds since
-- 1970 UTC; NULL means never. Keep in step with ../postgres/0001_init.sql.

CREATE TABLE app_passwords (
	id           TEXT    NOT NULL PRIMARY KEY, -- public lookup id (16 base32 characters)
	username     TEXT    NOT NULL,             -- mailbox address, lower case
	name         TEXT    NOT NULL,             -- the user's label ("phone")
	hash         TEXT    NOT NULL,             -- argon2id PHC string of the password; '' once revoked
	protocols    TEXT    NOT NULL,             -- scope: "imap,smtp,pop3,sieve"
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER,
	last_used_at INTEGER,                      -- updated at most once a minute
	last_used_ip TEXT    NOT NULL DEFAULT '',  -- client address of last_used_at
	revoked_at   INTEGER
) STRICT;

CREATE INDEX app_passwords_username ON app_passwords (username, created_at);

CREATE TABLE provider_links (
	username       TEXT    NOT NULL PRIMARY KEY,
	key_id         TEXT    NOT NULL,            -- id of the key that sealed refresh_token
	refresh_token  BLOB    NOT NULL,            -- AES-256-GCM: nonce || ciphertext || tag
	linked_at      INTEGER NOT NULL,            -- last sign-in that stored the token
	revalidated_at INTEGER NOT NULL,            -- last refresh the provider accepted
	suspended_at   INTEGER,                     -- the provider refused a refresh
	suspend_reason TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX provider_links_due ON provider_links (revalidated_at) WHERE suspended_at IS NULL;
