-- An organization whose every request fails the same way (credentials
-- refused, privilege missing, environment gone) is blocked: its deliveries
-- wait, nothing is dead-lettered for it, and one delivery at a time probes
-- whether the cause is gone.
CREATE TABLE organization_blocks (
    org         TEXT NOT NULL,
    destination TEXT NOT NULL,
    reason      TEXT NOT NULL,
    since       BIGINT NOT NULL,
    probe_at    BIGINT NOT NULL,
    PRIMARY KEY (org, destination)
);
