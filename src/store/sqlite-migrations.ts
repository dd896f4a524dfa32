/**
 * Schema of the embedded SQLite engine, as an ordered list of migrations.
 * A migration is never edited once released: add a new one instead.
 */

/** Migrations in order; index + 1 is the schema version. */
export const sqliteMigrations: readonly string[] = [
  `
  CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    -- sequence of the instance's newest event; writes compare-and-set it
    sequence    INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE instance_domains (
    domain      TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id)
  );
  CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    hash        TEXT NOT NULL UNIQUE,
    roles       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE events (
    instance_id TEXT NOT NULL REFERENCES instances (id),
    sequence    INTEGER NOT NULL,
    object_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, sequence)
  );
  CREATE TABLE smtp_providers (
    instance_id      TEXT NOT NULL REFERENCES instances (id),
    id               TEXT NOT NULL,
    description      TEXT NOT NULL,
    sender_address   TEXT NOT NULL,
    sender_name      TEXT NOT NULL,
    reply_to_address TEXT NOT NULL,
    tls              INTEGER NOT NULL,
    host             TEXT NOT NULL,
    user             TEXT NOT NULL,
    is_active        INTEGER NOT NULL,
    sealed_password  TEXT NOT NULL,
    sequence         INTEGER NOT NULL,
    creation_date    INTEGER NOT NULL,
    change_date      INTEGER NOT NULL,
    PRIMARY KEY (instance_id, id)
  );
  -- at most one active provider per instance, enforced by the database
  CREATE UNIQUE INDEX smtp_providers_one_active
    ON smtp_providers (instance_id) WHERE is_active = 1;
  `,
  `
  CREATE TABLE mails (
    id               TEXT PRIMARY KEY,
    instance_id      TEXT NOT NULL REFERENCES instances (id),
    -- NULL when the caller gave no key, so keys are unique only when set
    idempotency_key  TEXT,
    message_id       TEXT NOT NULL,
    recipients       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT NOT NULL,
    reply_to         TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    wait_reason      TEXT NOT NULL DEFAULT '',
    wait_provider_id TEXT NOT NULL DEFAULT '',
    wait_sequence    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_by       TEXT NOT NULL DEFAULT '',
    claim_expires_at INTEGER NOT NULL DEFAULT 0,
    provider_id      TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    UNIQUE (instance_id, idempotency_key)
  );
  CREATE INDEX mails_due ON mails (state, next_attempt_at);
  CREATE INDEX mails_waiting ON mails (wait_reason, instance_id) WHERE wait_reason <> '';
  `,
  // The outbox's periodic queries (claim, wake, expire) scanned every queued
  // mail, so a backlog of mails waiting for a provider made each worker tick
  // cost time in proportion to it. Each gets an index that holds only the
  // rows it can act on; see sqlite-mails.ts for the queries that use them.
  `
  DROP INDEX mails_due;
  DROP INDEX mails_waiting;
  -- claim: mails that may be sent now or soon, and claims that may expire
  CREATE INDEX mails_claimable ON mails (instance_id, next_attempt_at)
    WHERE (state = 'queued' AND wait_reason = '') OR state = 'sending';
  -- wake: waiting mails by what they wait for
  CREATE INDEX mails_waiting ON mails (instance_id, wait_provider_id, wait_sequence) WHERE wait_reason <> '';
  -- expire, and the outbox age in metrics
  CREATE INDEX mails_age ON mails (state, created_at);
  `,
];
