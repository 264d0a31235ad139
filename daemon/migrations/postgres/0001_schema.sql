-- chatd's PostgreSQL schema: the same tables and columns as the SQLite schema, with native
-- types (BOOLEAN, BIGINT, BYTEA). Times stay BIGINT milliseconds since the epoch, as in
-- SQLite, so an export is identical whichever backend wrote it.
--
-- Every name column uses the "C" collation: comparisons and ORDER BY are bytewise, as
-- SQLite's default BINARY collation, whatever locale the cluster was created with (listings
-- come out in the same order on both backends), and `LIKE 'dm:%'` can use the index.
--
-- `user` is a reserved word, so the columns naming a user are `user_name` (and `sender` in
-- messages).

CREATE TABLE users (
    name          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    password_file BYTEA   NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms    BIGINT  NOT NULL
);

-- last_seq is the sequence number of the room's newest message. A commit locks the rows of
-- its rooms (in name order) and takes the next numbers with UPDATE ... RETURNING, so
-- sequences are gap-free per room even with several daemons on one database.
-- retention_days overrides the global retention for this room (NULL: use the global one;
-- 0: keep forever). BIGINT, not INTEGER, so every u32 the store accepts round-trips.
CREATE TABLE rooms (
    name           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    private        BOOLEAN NOT NULL DEFAULT FALSE,
    last_seq       BIGINT  NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_ms     BIGINT  NOT NULL,
    retention_days BIGINT  NULL CHECK (retention_days >= 0)
);

CREATE TABLE room_members (
    room      TEXT COLLATE "C" NOT NULL REFERENCES rooms (name),
    user_name TEXT COLLATE "C" NOT NULL REFERENCES users (name),
    PRIMARY KEY (room, user_name)
);

-- "Which rooms is this user in" without a scan.
CREATE INDEX room_members_by_user ON room_members (user_name);

-- The primary key (room, seq) is the index history pages walk in both directions, export
-- pages walk by keyset and retention deletes walk from a room's oldest message. The sender
-- has no foreign key: the session has authenticated the sender before it queues a send, and
-- a second check would cost a lookup per message inside the commit.
CREATE TABLE messages (
    room   TEXT COLLATE "C" NOT NULL REFERENCES rooms (name),
    seq    BIGINT NOT NULL CHECK (seq > 0),
    sender TEXT COLLATE "C" NOT NULL,
    cmid   TEXT COLLATE "C" NOT NULL,
    body   TEXT   NOT NULL,
    ts_ms  BIGINT NOT NULL,
    PRIMARY KEY (room, seq),
    -- A resend with the same client message id finds the first commit through this index.
    UNIQUE (room, sender, cmid)
);

-- Tokens are stored by their SHA-256 hash, so a copy of the database cannot resume sessions.
CREATE TABLE resume_tokens (
    hash       BYTEA  NOT NULL PRIMARY KEY,
    user_name  TEXT COLLATE "C" NOT NULL REFERENCES users (name),
    expires_ms BIGINT NOT NULL
);

-- Revoking a user's tokens (disable, new password) and purging expired ones.
CREATE INDEX resume_tokens_by_user ON resume_tokens (user_name);
CREATE INDEX resume_tokens_by_expiry ON resume_tokens (expires_ms);

-- Node-wide secrets such as the OPAQUE server setup; every node reads the same row.
CREATE TABLE secrets (
    name  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);
