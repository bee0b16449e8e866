-- Where each found block stands at the nodes, kept by blkmaker's confirmation
-- watch: 'pending' (on the best chain, fewer confirmations than maturity),
-- 'confirmed' (mature: its reward spendable) or 'orphaned' (on no node's best
-- chain; is_orphaned says the same for older readers).
ALTER TABLE found_blocks
    ADD COLUMN confirmations INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'pending',
    ADD COLUMN checked_at DATETIME NULL,
    ADD KEY idx_found_blocks_status (status);

-- The work behind each block, written by statshttpd when it counts the share
-- that solved it: the accepted difficulty since the pool's previous block.
-- effort = work / network_difficulty. whole = 0 when the round began before the
-- oldest share statshttpd had (after a restart): work is then a lower bound.
CREATE TABLE block_work (
    hash                CHAR(64)        NOT NULL,
    height              INT UNSIGNED    NOT NULL,
    work                DOUBLE          NOT NULL,
    network_difficulty  DOUBLE          NOT NULL,
    since_ms            BIGINT UNSIGNED NOT NULL,
    whole               TINYINT(1)      NOT NULL,
    created_at          DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
