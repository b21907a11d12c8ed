-- Why a call left the queue it entered first for an overflow queue (issue #7): "max_wait", or
-- "no_agents" when nobody logged in could take it. The first overflow sticks, like `queue`.
ALTER TABLE calls ADD COLUMN overflowed_to TEXT;
ALTER TABLE calls ADD COLUMN overflowed_at BIGINT;
ALTER TABLE calls ADD COLUMN overflow_reason TEXT;
