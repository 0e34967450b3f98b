-- no-transaction
-- Deliveries a dry-run organization recorded keep a status of their own, so
-- that they can be sent for real once the organization is live. SQLite cannot
-- change a CHECK constraint: the two tables are rebuilt (SQLite's documented
-- procedure: foreign keys off, rebuild in one transaction, foreign keys on).
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE deliveries_new (
    id               TEXT PRIMARY KEY,
    lead_id          TEXT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    org              TEXT NOT NULL,
    destination      TEXT NOT NULL,
    status           TEXT NOT NULL
                     CHECK (status IN ('pending', 'retrying', 'delivered', 'dead', 'dry_run')),
    -- The primary key we send to Dataverse: a retried create cannot make a second record.
    record_id        TEXT NOT NULL,
    -- Where the record ended up (OData-EntityId), once delivered.
    remote_ref       TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    -- Attempts and start of the current retry run; a replay starts a new run.
    retry_attempts   BIGINT NOT NULL DEFAULT 0,
    retry_started_at BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_token      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (lead_id, destination)
);
INSERT INTO deliveries_new (id, lead_id, org, destination, status, record_id, remote_ref,
        attempts, retry_attempts, retry_started_at, next_attempt_at, lease_token,
        lease_until, last_error, created_at, updated_at)
    SELECT id, lead_id, org, destination, status, record_id, remote_ref,
        attempts, retry_attempts, retry_started_at, next_attempt_at, lease_token,
        lease_until, last_error, created_at, updated_at
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_lease ON deliveries (lease_token);
CREATE INDEX deliveries_org_status ON deliveries (org, status);
CREATE INDEX deliveries_waiting ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');

CREATE TABLE attempts_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead', 'dry_run')),
    http_status  BIGINT,
    error        TEXT
);
INSERT INTO attempts_new (id, delivery_id, attempted_at, outcome, http_status, error)
    SELECT id, delivery_id, attempted_at, outcome, http_status, error FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;
CREATE INDEX attempts_delivery ON attempts (delivery_id);

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
