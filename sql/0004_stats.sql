-- Hourly and daily share statistics (btcpool's stats_* tables). hour = YYYYMMDDHH and
-- day = YYYYMMDD, both UTC. share_* are difficulty sums; score = sum(diff / network diff);
-- earn = PPS satoshis (score x block subsidy at the share's height).
CREATE TABLE stats_pool_hour (
    hour INT UNSIGNED NOT NULL,
    share_accept  DOUBLE          NOT NULL DEFAULT 0,
    share_stale   DOUBLE          NOT NULL DEFAULT 0,
    share_reject  DOUBLE          NOT NULL DEFAULT 0,
    reject_rate   DOUBLE          NOT NULL DEFAULT 0,
    score         DECIMAL(35,25)  NOT NULL DEFAULT 0,
    earn          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (hour)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE stats_pool_day (
    day INT UNSIGNED NOT NULL,
    share_accept  DOUBLE          NOT NULL DEFAULT 0,
    share_stale   DOUBLE          NOT NULL DEFAULT 0,
    share_reject  DOUBLE          NOT NULL DEFAULT 0,
    reject_rate   DOUBLE          NOT NULL DEFAULT 0,
    score         DECIMAL(35,25)  NOT NULL DEFAULT 0,
    earn          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE stats_users_hour (
    user_id INT UNSIGNED NOT NULL,
    hour INT UNSIGNED NOT NULL,
    share_accept  DOUBLE          NOT NULL DEFAULT 0,
    share_stale   DOUBLE          NOT NULL DEFAULT 0,
    share_reject  DOUBLE          NOT NULL DEFAULT 0,
    reject_rate   DOUBLE          NOT NULL DEFAULT 0,
    score         DECIMAL(35,25)  NOT NULL DEFAULT 0,
    earn          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, hour),
    KEY idx_stats_users_hour_hour (hour)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE stats_users_day (
    user_id INT UNSIGNED NOT NULL,
    day INT UNSIGNED NOT NULL,
    share_accept  DOUBLE          NOT NULL DEFAULT 0,
    share_stale   DOUBLE          NOT NULL DEFAULT 0,
    share_reject  DOUBLE          NOT NULL DEFAULT 0,
    reject_rate   DOUBLE          NOT NULL DEFAULT 0,
    score         DECIMAL(35,25)  NOT NULL DEFAULT 0,
    earn          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, day),
    KEY idx_stats_users_day_day (day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE stats_workers_hour (
    user_id INT UNSIGNED NOT NULL,
    worker_id BIGINT NOT NULL,
    hour INT UNSIGNED NOT NULL,
    share_accept  DOUBLE          NOT NULL DEFAULT 0,
    share_stale   DOUBLE          NOT NULL DEFAULT 0,
    share_reject  DOUBLE          NOT NULL DEFAULT 0,
    reject_rate   DOUBLE          NOT NULL DEFAULT 0,
    score         DECIMAL(35,25)  NOT NULL DEFAULT 0,
    earn          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, worker_id, hour),
    KEY idx_stats_workers_hour_hour (hour)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE stats_workers_day (
    user_id INT UNSIGNED NOT NULL,
    worker_id BIGINT NOT NULL,
    day INT UNSIGNED NOT NULL,
    share_accept  DOUBLE          NOT NULL DEFAULT 0,
    share_stale   DOUBLE          NOT NULL DEFAULT 0,
    share_reject  DOUBLE          NOT NULL DEFAULT 0,
    reject_rate   DOUBLE          NOT NULL DEFAULT 0,
    score         DECIMAL(35,25)  NOT NULL DEFAULT 0,
    earn          BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME        NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, worker_id, day),
    KEY idx_stats_workers_day_day (day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
