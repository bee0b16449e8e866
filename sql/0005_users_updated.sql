-- When a user row last changed (added, disabled, enabled): sservers refresh
-- their cache from the rows changed since their last look instead of
-- re-reading the whole table.
ALTER TABLE users
    ADD COLUMN updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    ADD KEY idx_users_updated_at (updated_at);
