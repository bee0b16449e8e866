-- Solo mining (issue 28): a user who logged in with a Bitcoin address to mine
-- solo, and the address a solo block's coinbase pays.
ALTER TABLE users
    ADD COLUMN solo TINYINT(1) NOT NULL DEFAULT 0;

ALTER TABLE found_blocks
    ADD COLUMN solo_address VARCHAR(90) NULL;
