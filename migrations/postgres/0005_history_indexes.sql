-- The delivery history page lists deliveries newest first, a page at a time
-- from the last row seen (keyset on created_at, id), alone or for one
-- organization or one status: each order has its index, so a page reads its
-- rows and no others, however long the history.
CREATE INDEX deliveries_history ON deliveries (created_at, id);
CREATE INDEX deliveries_history_org ON deliveries (org, created_at, id);
CREATE INDEX deliveries_history_status ON deliveries (status, created_at, id);
