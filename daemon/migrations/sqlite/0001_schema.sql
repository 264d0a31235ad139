-- chatd's SQLite schema: users, rooms and their members, messages, resume tokens and
-- node-wide secrets. Tables are STRICT so a wrong type is refused instead of stored;
-- booleans are INTEGER 0/1 (SQLite has no boolean type).
--
-- `user` is a reserved word in Postgres, so the columns naming a user are `user_name`
-- (and `sender` in messages); the SQL in the store stays the same for both backends.

CREATE TABLE users (
    name          TEXT    NOT NULL PRIMARY KEY,
    password_file BLOB    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_ms    INTEGER NOT NULL
) STRICT;

-- last_seq is the sequence number of the room's newest message; a commit takes the next
-- numbers with UPDATE ... RETURNING, which makes sequences gap-free per room.
-- retention_days overrides the global retention for this room (NULL: use the global one;
-- 0: keep forever).
CREATE TABLE rooms (
    name           TEXT    NOT NULL PRIMARY KEY,
    private        INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
    last_seq       INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_ms     INTEGER NOT NULL,
    retention_days INTEGER CHECK (retention_days >= 0)
) STRICT;

CREATE TABLE room_members (
    room      TEXT NOT NULL REFERENCES rooms (name),
    user_name TEXT NOT NULL REFERENCES users (name),
    PRIMARY KEY (room, user_name)
) STRICT;

-- "Which rooms is this user in" without a scan.
CREATE INDEX room_members_by_user ON room_members (user_name);

-- The primary key (room, seq) is the index history pages walk in both directions. The
-- sender has no foreign key: the session has authenticated the sender before it queues a
-- send, and a second check would cost a lookup per message inside the commit.
CREATE TABLE messages (
    room   TEXT    NOT NULL REFERENCES rooms (name),
    seq    INTEGER NOT NULL CHECK (seq > 0),
    sender TEXT    NOT NULL,
    cmid   TEXT    NOT NULL,
    body   TEXT    NOT NULL,
    ts_ms  INTEGER NOT NULL,
    PRIMARY KEY (room, seq),
    -- A resend with the same client message id finds the first commit through this index.
    UNIQUE (room, sender, cmid)
) STRICT;

-- Tokens are stored by their SHA-256 hash, so a copy of the database cannot resume sessions.
CREATE TABLE resume_tokens (
    hash       BLOB    NOT NULL PRIMARY KEY,
    user_name  TEXT    NOT NULL REFERENCES users (name),
    expires_ms INTEGER NOT NULL
) STRICT;

-- Revoking a user's tokens (disable, new password) and purging expired ones.
CREATE INDEX resume_tokens_by_user ON resume_tokens (user_name);
CREATE INDEX resume_tokens_by_expiry ON resume_tokens (expires_ms);

-- Node-wide secrets such as the OPAQUE server setup; every node reads the same row.
CREATE TABLE secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
