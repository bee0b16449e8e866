-- Payouts: the payer's books (issue 25). Amounts are whole satoshis
-- (BIGINT); work is whole hashes (DECIMAL(39,0): up to 2^128), never floats.

-- Accepted work per user per unix minute, as the payer read it from the
-- Share topic (accepted and block shares; stale and rejected are no work).
-- network_bits and height are the share's job's: a minute that spans a block
-- or a retarget keeps its parts apart (PPS values each at its own target).
CREATE TABLE payout_work (
    minute          INT UNSIGNED    NOT NULL,
    user_id         INT UNSIGNED    NOT NULL,
    height          INT UNSIGNED    NOT NULL,
    network_bits    INT UNSIGNED    NOT NULL,
    work            DECIMAL(39,0)   NOT NULL,
    shares          INT UNSIGNED    NOT NULL,
    PRIMARY KEY (minute, user_id, height, network_bits),
    KEY idx_payout_work_user (user_id, minute)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Where the payer's reading of the Share topic stands, written in the same
-- database transaction as the work it read: a restart resumes exactly there,
-- so no share is counted twice or missed. newest_ms: the newest share time
-- read on the partition.
CREATE TABLE payout_offsets (
    topic           VARCHAR(128)    NOT NULL,
    part            INT             NOT NULL,
    next_offset     BIGINT          NOT NULL,
    newest_ms       BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (topic, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Block shares as the payer read them from the Share topic: where each
-- found block's PPLNS window ends (the minute of its share) and the network
-- target it met (its work), from the same records the share log keeps.
CREATE TABLE payout_found (
    hash            CHAR(64)        NOT NULL,
    timestamp_ms    BIGINT UNSIGNED NOT NULL,
    height          INT UNSIGNED    NOT NULL,
    network_bits    INT UNSIGNED    NOT NULL,
    user_id         INT UNSIGNED    NOT NULL,
    PRIMARY KEY (hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The books: double-entry, each transaction's entries sum to zero, unique by
-- (kind, reference) so a repeated step writes nothing. Never updated or
-- deleted: a reversal is a transaction of its own.
CREATE TABLE ledger_txns (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    kind            VARCHAR(24)     NOT NULL,
    reference       VARCHAR(80)     NOT NULL,
    created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_ledger_txns (kind, reference)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- account: 1 rewards, 2 pps, 3 immature, 4 balance, 5 in flight, 6 paid
-- (sluice_ledger::Account); user_id 0 is the pool's own.
CREATE TABLE ledger_entries (
    txn_id          BIGINT UNSIGNED  NOT NULL,
    account         TINYINT UNSIGNED NOT NULL,
    user_id         INT UNSIGNED     NOT NULL,
    amount          BIGINT           NOT NULL,
    PRIMARY KEY (txn_id, account, user_id),
    KEY idx_ledger_entries_user (user_id, account)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Each credited block and the window it was split by, so the split can be
-- done again from the share log (sluicectl payouts verify).
CREATE TABLE ledger_blocks (
    hash            CHAR(64)        NOT NULL,
    height          INT UNSIGNED    NOT NULL,
    scheme          VARCHAR(8)      NOT NULL,
    reward          BIGINT UNSIGNED NOT NULL,
    fee_bps         INT UNSIGNED    NOT NULL,
    block_work      DECIMAL(39,0)   NOT NULL,
    window_size     DECIMAL(39,0)   NOT NULL,
    first_minute    INT UNSIGNED    NOT NULL,
    last_minute     INT UNSIGNED    NOT NULL,
    window_work     DECIMAL(39,0)   NOT NULL,
    filled          TINYINT(1)      NOT NULL,
    -- The Share topic read so far when it was split ({"partition": next
    -- offset}): the shares it was split by are exactly those before it.
    cut             TEXT            NOT NULL,
    state           VARCHAR(16)     NOT NULL,
    credited_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    settled_at      DATETIME(3)     NULL,
    PRIMARY KEY (hash),
    KEY idx_ledger_blocks_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Each user's work in a block's window and what it earned.
CREATE TABLE ledger_block_users (
    hash            CHAR(64)        NOT NULL,
    user_id         INT UNSIGNED    NOT NULL,
    work            DECIMAL(39,0)   NOT NULL,
    credit          BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (hash, user_id),
    KEY idx_ledger_block_users_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- PPS: each user's running value (2^-64 satoshi) of every share read, kept
-- with the work; a PPS credit pays its whole satoshis not yet credited.
CREATE TABLE pps_accrued (
    user_id         INT UNSIGNED    NOT NULL,
    value           DECIMAL(39,0)   NOT NULL,
    credited        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Each PPS credit and the Share topic read when it was made: every user's
-- PPS credits up to it are the whole satoshis of the value of their shares
-- before the cut.
CREATE TABLE pps_credits (
    reference       VARCHAR(80)     NOT NULL,
    cut             TEXT            NOT NULL,
    users           INT UNSIGNED    NOT NULL,
    total           BIGINT UNSIGNED NOT NULL,
    created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (reference)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Where a user is paid and from what balance on (NULL: the pool's).
CREATE TABLE payout_settings (
    user_id         INT UNSIGNED    NOT NULL,
    address         VARCHAR(100)    NOT NULL,
    min_payout      BIGINT UNSIGNED NULL,
    updated_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Payout batches: one transaction each. state: signed (written before it is
-- broadcast, with the signed transaction), broadcast, confirmed, failed.
CREATE TABLE payouts (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    state           VARCHAR(16)     NOT NULL,
    txid            CHAR(64)        NOT NULL,
    tx_hex          MEDIUMTEXT      NOT NULL,
    total           BIGINT UNSIGNED NOT NULL,
    network_fee     BIGINT UNSIGNED NOT NULL,
    users           INT UNSIGNED    NOT NULL,
    error           TEXT            NULL,
    created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    broadcast_at    DATETIME(3)     NULL,
    settled_at      DATETIME(3)     NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_payouts_txid (txid),
    KEY idx_payouts_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE payout_items (
    payout_id       BIGINT UNSIGNED NOT NULL,
    user_id         INT UNSIGNED    NOT NULL,
    address         VARCHAR(100)    NOT NULL,
    amount          BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (payout_id, user_id),
    KEY idx_payout_items_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
