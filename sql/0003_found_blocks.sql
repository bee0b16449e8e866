-- Blocks the pool submitted, written by blkmaker (idempotent on hash).
-- submit_results: JSON object, node name -> Bitcoin Core's answer (null = accepted).
CREATE TABLE found_blocks (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    height          INT UNSIGNED    NOT NULL,
    hash            CHAR(64)        NOT NULL,
    prev_hash       CHAR(64)        NOT NULL,
    user_id         INT UNSIGNED    NOT NULL,
    worker_id       BIGINT          NOT NULL,
    worker_name     VARCHAR(64)     NOT NULL,
    job_id          BIGINT UNSIGNED NOT NULL,
    reward          BIGINT UNSIGNED NOT NULL,
    fees            BIGINT UNSIGNED NOT NULL,
    size            INT UNSIGNED    NOT NULL,
    tx_count        INT UNSIGNED    NOT NULL,
    submit_results  TEXT            NOT NULL,
    is_orphaned     TINYINT(1)      NOT NULL DEFAULT 0,
    created_at      DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY uk_found_blocks_hash (hash),
    KEY idx_found_blocks_height (height)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
