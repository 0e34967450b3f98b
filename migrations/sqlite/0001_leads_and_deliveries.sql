-- Times are Unix milliseconds (UTC), ids are UUID text, flags are 0/1: the
-- same shape as the PostgreSQL schema, so one set of queries serves both.

CREATE TABLE leads (
    id          TEXT PRIMARY KEY,
    org         TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    request_id  TEXT NOT NULL,
    is_test     BIGINT NOT NULL DEFAULT 0,
    -- The document as received, unknown fields included.
    payload     TEXT NOT NULL
);
CREATE INDEX leads_received ON leads (received_at);

-- The same document re-sent for the same organization within the window is a
-- duplicate; one row per (org, fingerprint), pointing at the original lead.
CREATE TABLE lead_fingerprints (
    org         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    lead_id     TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (org, fingerprint)
);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    lead_id          TEXT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    org              TEXT NOT NULL,
    destination      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'retrying', 'delivered', 'dead')),
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
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_lease ON deliveries (lease_token);
CREATE INDEX deliveries_org_status ON deliveries (org, status);

CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
    http_status  BIGINT,
    error        TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

-- Retry-After from a destination pauses that organization's whole queue, for
-- every replica sharing the store.
CREATE TABLE throttles (
    org          TEXT NOT NULL,
    destination  TEXT NOT NULL,
    paused_until BIGINT NOT NULL,
    PRIMARY KEY (org, destination)
);
