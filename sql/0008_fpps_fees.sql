-- FPPS: the fees a block is taken to pay for shares of jobs at each height,
-- recorded once when the payer first values such a share (the mean of
-- getblockstats totalfee over the blocks first_height..height-1 of the node
-- it asked), so `sluicectl payouts verify` values the shares the same way
-- and anyone can re-check the mean against a node.
CREATE TABLE fpps_fees (
    height          INT UNSIGNED    NOT NULL,
    mean_fees       BIGINT UNSIGNED NOT NULL,
    first_height    INT UNSIGNED    NOT NULL,
    blocks          INT UNSIGNED    NOT NULL,
    total_fees      BIGINT UNSIGNED NOT NULL,
    node            VARCHAR(100)    NOT NULL,
    recorded_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (height)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
