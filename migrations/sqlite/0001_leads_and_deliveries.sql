-- Times are Unix milliseconds (UTC), ids are UUID text: the same shape works on PostgreSQL.

CREATE TABLE leads (
    id          TEXT PRIMARY KEY,
    org         TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    request_id  TEXT NOT NULL,
    is_test     INTEGER NOT NULL DEFAULT 0,
    -- The document as received, unknown fields included.
    payload     TEXT NOT NULL
);
CREATE INDEX leads_org_received ON leads (org, received_at);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    lead_id         TEXT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'retrying', 'delivered', 'dead')),
    -- The primary key we send to Dataverse: a retried create cannot make a second record.
    record_id       TEXT NOT NULL,
    -- Where the record ended up (OData-EntityId), once delivered.
    remote_ref      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_token     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (lead_id, destination)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_lease ON deliveries (lease_token);

CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
    http_status  INTEGER,
    error        TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
