-- Live per-worker figures, flushed by statshttpd. Difficulty sums are DOUBLE
-- because share difficulty may be fractional (regtest, testnet).
-- worker_id 0 is the user's aggregate row.
CREATE TABLE mining_workers (
    user_id          INT UNSIGNED    NOT NULL,
    worker_id        BIGINT          NOT NULL,
    worker_name      VARCHAR(64)     NOT NULL DEFAULT '',
    accept_5m        DOUBLE          NOT NULL DEFAULT 0,
    accept_15m       DOUBLE          NOT NULL DEFAULT 0,
    stale_15m        DOUBLE          NOT NULL DEFAULT 0,
    reject_15m       DOUBLE          NOT NULL DEFAULT 0,
    accept_1h        DOUBLE          NOT NULL DEFAULT 0,
    stale_1h         DOUBLE          NOT NULL DEFAULT 0,
    reject_1h        DOUBLE          NOT NULL DEFAULT 0,
    hashrate_5m      DOUBLE          NOT NULL DEFAULT 0,
    hashrate_15m     DOUBLE          NOT NULL DEFAULT 0,
    hashrate_1h      DOUBLE          NOT NULL DEFAULT 0,
    accept_count     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    last_share_ip    VARCHAR(45)     NOT NULL DEFAULT '',
    last_share_time  DATETIME        NULL,
    miner_agent      VARCHAR(64)     NOT NULL DEFAULT '',
    created_at       DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, worker_id),
    KEY idx_mining_workers_name (user_id, worker_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
