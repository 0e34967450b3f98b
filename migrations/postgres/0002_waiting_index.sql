-- Claiming and "when is the next one due" look only at waiting deliveries,
-- oldest first: an index of just those keeps both cheap with a long backlog
-- of finished ones and avoids sorting the waiting ones at every claim.
CREATE INDEX deliveries_waiting ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
