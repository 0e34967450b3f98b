-- Deliveries a dry-run organization recorded keep a status of their own, so
-- that they can be sent for real once the organization is live.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'retrying', 'delivered', 'dead', 'dry_run'));
ALTER TABLE attempts DROP CONSTRAINT attempts_outcome_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_outcome_check
    CHECK (outcome IN ('delivered', 'retry', 'dead', 'dry_run'));
